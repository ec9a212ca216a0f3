//! A bounded in-memory cache of small files and their encoded variants.
//!
//! A hit costs a hash lookup and an `Arc` clone: no syscall, no hop to the
//! blocking pool. Each entry is re-checked against the file (size, mtime,
//! inode) at most once per `REVALIDATE`, by one request while the others
//! keep being served, so a changed file is seen within that time. Requests
//! that miss together wait for one load (or one encoding of a variant)
//! instead of each reading the file. Total bytes are capped; when a new
//! entry does not fit, the least recently used entries are evicted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::resolve::SafePath;
use crate::http::compression::Coding;
use crate::http::sendfile::HeldFile;

/// How stale a cached file may be before it is checked against the disk.
pub const REVALIDATE: Duration = Duration::from_secs(1);
/// Files larger than this stream from disk instead.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;
/// Default total size of a site's cache (content plus variants).
pub const DEFAULT_CAPACITY: u64 = 64 << 20;
/// Locks that make concurrent misses of one file wait for a single load.
const LOAD_STRIPES: usize = 32;

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub inode: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        }
    }

    /// A strong validator of this version; `suffix` tells encodings apart.
    pub fn etag(&self, suffix: &str) -> HeaderValue {
        let nanos = self
            .modified
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let tag = format!("\"{:x}-{nanos:x}-{:x}{suffix}\"", self.len, self.inode);
        HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"weir\""))
    }
}

/// One encoding of a file's content.
#[derive(Debug, Clone)]
pub struct Representation {
    pub coding: Coding,
    pub body: Bytes,
    pub etag: HeaderValue,
    /// The file `body` was read from, still open, for the kernel to send
    /// (`http::sendfile`); none for compressed-on-the-fly variants.
    pub file: Option<Arc<HeldFile>>,
}

/// A cached file: identity content, what other encodings exist, and those
/// that have been read or computed so far.
#[derive(Debug)]
pub struct Entry {
    /// Canonical path of the file.
    pub path: PathBuf,
    pub stamp: Stamp,
    pub content_type: &'static str,
    /// Response headers shared by every representation (type, dates,
    /// cache policy, header rules, Vary).
    pub base: HeaderMap,
    pub identity: Representation,
    /// Codings this file can be sent in besides identity, in server
    /// preference order (a sidecar exists, or it is worth compressing).
    pub offered: Vec<Coding>,
    /// Sidecar files found next to it: (coding, path, stamp).
    pub sidecars: Vec<(Coding, PathBuf, Stamp)>,
    /// Variants filled on first use; index by `Coding` position.
    variants: [OnceLock<Option<Representation>>; 3],
    /// Held while a variant is being made, so it is made once.
    making: tokio::sync::Mutex<()>,
    checked_ms: AtomicU64,
    used: AtomicU64,
}

fn variant_slot(coding: Coding) -> Option<usize> {
    match coding {
        Coding::Identity => None,
        Coding::Brotli => Some(0),
        Coding::Zstd => Some(1),
        Coding::Gzip => Some(2),
    }
}

impl Entry {
    pub fn new(
        path: PathBuf,
        stamp: Stamp,
        content_type: &'static str,
        (body, file): (Bytes, Option<Arc<HeldFile>>),
        base: HeaderMap,
        offered: Vec<Coding>,
        sidecars: Vec<(Coding, PathBuf, Stamp)>,
    ) -> Entry {
        Entry {
            identity: Representation {
                coding: Coding::Identity,
                etag: stamp.etag(""),
                body,
                file,
            },
            path,
            stamp,
            content_type,
            base,
            offered,
            sidecars,
            variants: Default::default(),
            making: tokio::sync::Mutex::new(()),
            checked_ms: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// The variant for `coding` if it has been made already.
    pub fn variant(&self, coding: Coding) -> Option<&Option<Representation>> {
        self.variants[variant_slot(coding)?].get()
    }

    /// Held while making a variant: whoever gets it second finds it made.
    pub async fn making(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.making.lock().await
    }

    /// Stores a variant (or its absence); the first one stored wins.
    pub fn set_variant(
        &self,
        coding: Coding,
        made: Option<Representation>,
    ) -> Option<&Representation> {
        let slot = variant_slot(coding)?;
        self.variants[slot].get_or_init(|| made).as_ref()
    }

    fn bytes(&self) -> u64 {
        let variants: u64 = self
            .variants
            .iter()
            .filter_map(|v| v.get().and_then(Option::as_ref))
            .map(|r| r.body.len() as u64)
            .sum();
        self.identity.body.len() as u64 + variants
    }
}

/// What the cache says about a path.
pub enum Cached {
    /// Checked against the disk within `REVALIDATE`: serve it.
    Fresh(Arc<Entry>),
    /// Due for a check, and this caller is the one to make it.
    Revalidate,
    /// Not cached.
    Miss,
}

/// The cache of one site.
#[derive(Debug)]
pub struct FileCache {
    entries: RwLock<HashMap<SafePath, Arc<Entry>>>,
    capacity: u64,
    epoch: Instant,
    clock: AtomicU64,
    loading: [tokio::sync::Mutex<()>; LOAD_STRIPES],
    disk_lookups: AtomicU64,
}

impl FileCache {
    pub fn new(capacity: u64) -> FileCache {
        FileCache {
            entries: RwLock::new(HashMap::new()),
            capacity,
            epoch: Instant::now(),
            clock: AtomicU64::new(0),
            loading: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            disk_lookups: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Looks `key` up. Of the requests that find an entry due for a check,
    /// one is told to revalidate; the others are served the entry meanwhile.
    pub fn lookup(&self, key: &SafePath) -> Cached {
        let Some(entry) = self.entries.read().ok().and_then(|e| e.get(key).cloned()) else {
            return Cached::Miss;
        };
        let now = self.now_ms();
        let checked = entry.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(checked) > REVALIDATE.as_millis() as u64
            && entry
                .checked_ms
                .compare_exchange(checked, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Cached::Revalidate;
        }
        entry.used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Cached::Fresh(entry)
    }

    /// Held while loading `key` from disk, so that misses of one file
    /// that arrive together read it once.
    pub async fn loading(&self, key: &SafePath) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        self.loading[hash as usize % LOAD_STRIPES].lock().await
    }

    /// Any cached entry for `key`, fresh or not (for revalidation).
    pub fn get(&self, key: &SafePath) -> Option<Arc<Entry>> {
        self.entries.read().ok()?.get(key).cloned()
    }

    /// Marks an entry as just checked against the disk.
    pub fn touch(&self, entry: &Entry) {
        entry.checked_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Inserts (or replaces) an entry, evicting least recently used ones
    /// until everything fits. Entries bigger than the whole cache are not kept.
    pub fn insert(&self, key: SafePath, entry: Arc<Entry>) {
        self.touch(&entry);
        entry.used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        entries.insert(key, entry);
        self.evict(&mut entries);
    }

    /// Called after a variant was added to an entry: it may push the cache over.
    pub fn grew(&self) {
        if let Ok(mut entries) = self.entries.write() {
            self.evict(&mut entries);
        }
    }

    pub fn remove(&self, key: &SafePath) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key);
        }
    }

    fn evict(&self, entries: &mut HashMap<SafePath, Arc<Entry>>) {
        let mut total: u64 = entries.values().map(|e| e.bytes()).sum();
        while total > self.capacity {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = entries.remove(&oldest) {
                total = total.saturating_sub(gone.bytes());
            }
        }
    }

    /// Counts a lookup that had to go to the disk.
    pub fn count_disk_lookup(&self) {
        self.disk_lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// Lookups that went to the disk so far, for tests and metrics.
    pub fn disk_lookups(&self) -> u64 {
        self.disk_lookups.load(Ordering::Relaxed)
    }

    /// Bytes held (content and variants), for tests and metrics.
    pub fn size(&self) -> u64 {
        self.entries
            .read()
            .map(|e| e.values().map(|e| e.bytes()).sum())
            .unwrap_or(0)
    }
}
