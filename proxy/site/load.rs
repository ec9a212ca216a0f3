//! The blocking half of serving a file: find it, check a cached entry still
//! matches the disk, read small files (and their sidecars) into the cache,
//! open large ones for streaming. Runs on the blocking pool, never on a
//! runtime worker.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::cache::{Entry, MAX_ENTRY_BYTES, Stamp};
use super::resolve::{self, Located, ResolveError, SafePath};
use super::{Site, mime, serve};
use crate::http::compression::{self, Coding};
use crate::http::sendfile::HeldFile;

/// What a lookup found.
pub enum Found {
    /// A small file, now in the cache.
    Entry(Arc<Entry>),
    /// A file too large for the cache, opened for streaming.
    Large(Large),
    /// A directory asked for without its slash.
    AddSlash(String),
}

/// A large file and what its response needs.
pub struct Large {
    pub file: File,
    pub stamp: Stamp,
    pub base: http::HeaderMap,
    pub offered: Vec<Coding>,
    pub sidecars: Vec<(Coding, PathBuf, Stamp)>,
}

/// Finds `key` in `site`: the cached entry when the disk still agrees,
/// else the file read (small) or opened (large) anew.
pub fn find(site: &Site, key: &SafePath) -> Result<Found, ResolveError> {
    site.cache.count_disk_lookup();
    if let Some(entry) = site.cache.get(key) {
        if still_current(site, &entry) {
            site.cache.touch(&entry);
            return Ok(Found::Entry(entry));
        }
        site.cache.remove(key);
    }
    match resolve::locate(&site.root, key)? {
        Located::AddSlash(location) => Ok(Found::AddSlash(location)),
        // By its real path: another name for it (a symlink) is refused too.
        Located::File(path) if site.hidden.contains(&path) => Err(ResolveError::NotFound),
        Located::File(path) => load(site, key, path),
    }
}

fn stat(path: &Path) -> Option<Stamp> {
    fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Stamp::of(&m))
}

/// The file and every sidecar (present or absent) are as when cached.
fn still_current(site: &Site, entry: &Entry) -> bool {
    stat(&entry.path) == Some(entry.stamp) && sidecars(site, &entry.path) == entry.sidecars
}

fn load(site: &Site, key: &SafePath, path: PathBuf) -> Result<Found, ResolveError> {
    let io_error = |e| ResolveError::from_io(&path, e);
    let mut file = File::open(&path).map_err(io_error)?;
    // Headers come from the open handle: the path may have been replaced since it was located.
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    let mut stamp = Stamp::of(&meta);
    let content_type = mime::for_path(&path);
    let base = serve::base_headers(site, &key.url_path(), content_type, stamp.modified);
    let sidecars = sidecars(site, &path);
    let offered = offered(site, content_type, stamp.len, &sidecars, &base);
    if stamp.len > MAX_ENTRY_BYTES {
        return Ok(Found::Large(Large {
            file,
            stamp,
            base,
            offered,
            sidecars,
        }));
    }
    let mut content = Vec::with_capacity(stamp.len as usize);
    (&mut file)
        .take(stamp.len)
        .read_to_end(&mut content)
        .map_err(io_error)?;
    // A file that shrank while being read is cached as read, and its bytes
    // are sent from memory.
    let held = (content.len() as u64 == stamp.len)
        .then(|| HeldFile::hold(file, stamp.len))
        .flatten();
    stamp.len = content.len() as u64;
    let entry = Arc::new(Entry::new(
        path,
        stamp,
        content_type,
        (Bytes::from(content), held),
        base,
        offered,
        sidecars,
    ));
    site.cache.insert(key.clone(), entry.clone());
    Ok(Found::Entry(entry))
}

/// `app.js.br` and friends next to `path`, for the site's precompressed
/// codings: regular files whose real path is still under the root.
fn sidecars(site: &Site, path: &Path) -> Vec<(Coding, PathBuf, Stamp)> {
    site.precompressed
        .iter()
        .filter_map(|&coding| {
            let mut name = path.as_os_str().to_owned();
            name.push(coding.sidecar_suffix()?);
            let real = fs::canonicalize(PathBuf::from(name)).ok()?;
            if !real.starts_with(&site.root) {
                return None;
            }
            Some((coding, real.clone(), stat(&real)?))
        })
        .collect()
}

/// Codings worth offering for this file, in the site's preference order:
/// a sidecar exists, or on-the-fly compression applies.
fn offered(
    site: &Site,
    content_type: &str,
    len: u64,
    sidecars: &[(Coding, PathBuf, Stamp)],
    base: &http::HeaderMap,
) -> Vec<Coding> {
    let on_the_fly = len >= site.min_size
        && compression::compressible(content_type)
        && !compression::no_transform(base);
    site.preference()
        .filter(|c| {
            sidecars.iter().any(|(s, ..)| s == c) || (on_the_fly && site.compress.contains(c))
        })
        .collect()
}

/// Reads a sidecar whole, keeping it open for sendfile when that pays;
/// `None` when it vanished or grew too large.
pub fn read_small(path: &Path) -> Option<(Bytes, Option<Arc<HeldFile>>)> {
    let mut file = File::open(path).ok()?;
    let mut content = Vec::new();
    (&mut file)
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut content)
        .ok()?;
    let len = content.len() as u64;
    (len <= MAX_ENTRY_BYTES).then(|| (Bytes::from(content), HeldFile::hold(file, len)))
}

/// Positions `file` at `start` (for a range).
pub fn seek(mut file: File, start: u64) -> io::Result<File> {
    file.seek(SeekFrom::Start(start))?;
    Ok(file)
}
