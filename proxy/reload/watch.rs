//! The watcher. notify's callback runs on notify's own thread: it keeps the
//! events that name a watched file (or `..data`) and pokes a Tokio task
//! over a small bounded channel (a full channel already means "look
//! soon"). The task waits for quiet, compares the disk with what is
//! serving, reloads when they differ, and re-derives what to watch.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Targets, config_dir, fingerprint};
use crate::app::App;
use crate::snapshot::Snapshot;

/// Quiet time after the last event before the disk is read: one editor
/// save, or one ConfigMap swap, is one reload.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A burst that never goes quiet is still looked at after this long.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often to check whether another trigger (SIGHUP, `POST /reload`)
/// changed the config, so that the files it names get watched.
const RESYNC: Duration = Duration::from_secs(2);

type Names = Arc<Mutex<HashSet<OsString>>>;

/// A running file watch; dropping it stops the watch.
#[must_use = "the watch stops when this is dropped"]
#[derive(Debug)]
pub struct Watch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the config file of `app` and the files it names; call
/// from inside the Tokio runtime. `None` when the config is embedded (no
/// file) or the watcher cannot be created (logged: SIGHUP and
/// `POST /reload` still work). Changes made after this returns are seen.
pub fn spawn(app: Arc<App>) -> Option<Watch> {
    let snapshot = app.snapshot();
    let file = snapshot.file.clone()?;
    let names: Names = Arc::default();
    let (poke, pokes) = mpsc::channel(16);
    let filter = names.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        if relevant(&event, &filter) {
            let _ = poke.try_send(());
        }
    });
    let watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the config file; reload with SIGHUP or POST /reload");
            return None;
        }
    };
    let targets = Targets::of(&file, &snapshot.effective);
    let mut watched = Watched {
        watcher,
        dirs: BTreeSet::new(),
        failed: BTreeSet::new(),
    };
    watched.update(&targets, &names);
    if !watched.dirs.contains(&config_dir(&file)) {
        tracing::warn!(
            file = %file.display(),
            "the config file's directory is not watched; reload with SIGHUP or POST /reload"
        );
    }
    tracing::debug!(dirs = ?watched.dirs, "watching config files");
    let failed_seen = failed_reloads(&app);
    let state = State {
        app,
        watched: Some(watched),
        names,
        generation: snapshot.generation,
        applied: fingerprint(&targets.files),
        failed_seen,
    };
    Some(Watch {
        task: tokio::spawn(state.run(pokes)),
    })
}

/// Does this event (on notify's thread) name something we watch?
fn relevant(event: &notify::Result<Event>, names: &Mutex<HashSet<OsString>>) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "file watch error; checking the config files");
            return true;
        }
    };
    if event.need_rescan() {
        return true;
    }
    // Opening and reading (our own reloads do) changes nothing.
    if let EventKind::Access(kind) = event.kind
        && kind != AccessKind::Close(AccessMode::Write)
    {
        return false;
    }
    let names = names.lock().unwrap_or_else(PoisonError::into_inner);
    event
        .paths
        .iter()
        .any(|path| path.file_name().is_some_and(|name| names.contains(name)))
}

struct Watched {
    watcher: RecommendedWatcher,
    /// Directories being watched.
    dirs: BTreeSet<PathBuf>,
    /// Directories that could not be watched (warned about once).
    failed: BTreeSet<PathBuf>,
}

impl Watched {
    /// Watches exactly `targets.dirs` (blocking: notify waits for its
    /// thread). Every directory is added again, so that one replaced by a
    /// new directory of the same name is followed.
    fn update(&mut self, targets: &Targets, names: &Mutex<HashSet<OsString>>) {
        for gone in self.dirs.difference(&targets.dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        let mut dirs = BTreeSet::new();
        for dir in &targets.dirs {
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.failed.remove(dir);
                    dirs.insert(dir.clone());
                }
                Err(error) => {
                    if self.failed.insert(dir.clone()) {
                        tracing::warn!(
                            dir = %dir.display(),
                            %error,
                            "cannot watch a directory; changes there need SIGHUP or POST /reload"
                        );
                    }
                }
            }
        }
        self.failed.retain(|dir| targets.dirs.contains(dir));
        self.dirs = dirs;
        *names.lock().unwrap_or_else(PoisonError::into_inner) = targets.names.clone();
    }
}

struct State {
    app: Arc<App>,
    /// `None` only if a blocking task lost it (then the watch ends).
    watched: Option<Watched>,
    names: Names,
    /// The generation the watched set was derived from.
    generation: u64,
    /// Fingerprint of the named files when the serving config was loaded
    /// by this watch (or at start).
    applied: u64,
    /// `weir_config_reloads_total{result="failed"}` when last looked at
    /// (every `RESYNC` and after each burst): a failure counted since then
    /// came from another trigger, most likely for this burst's file.
    failed_seen: Option<u64>,
}

/// The config on disk, compared with what is serving.
enum Disk {
    Valid {
        /// It parses to the effective config that is serving.
        same: bool,
        /// Fingerprint of the files it names.
        files: u64,
    },
    Invalid,
}

impl State {
    async fn run(mut self, mut pokes: mpsc::Receiver<()>) {
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while self.watched.is_some() {
            tokio::select! {
                poke = pokes.recv() => if poke.is_none() { return },
                _ = resync.tick() => {
                    self.failed_seen = failed_reloads(&self.app);
                    let snapshot = self.app.snapshot();
                    if snapshot.generation != self.generation {
                        self.rewatch(snapshot).await;
                    }
                    continue;
                }
            }
            let started = Instant::now();
            loop {
                let quiet = (Instant::now() + DEBOUNCE).min(started + MAX_DELAY);
                tokio::select! {
                    poke = pokes.recv() => if poke.is_none() { return },
                    () = tokio::time::sleep_until(quiet) => break,
                }
            }
            self.settle().await;
            self.failed_seen = failed_reloads(&self.app);
        }
    }

    /// After a burst: reload unless the disk already matches what serves.
    async fn settle(&mut self) {
        let serving = self.app.snapshot();
        let Some(file) = serving.file.clone() else {
            return;
        };
        let look = {
            let serving = serving.clone();
            tokio::task::spawn_blocking(move || look(&file, &serving.effective)).await
        };
        let disk = match look {
            Ok(disk) => disk,
            Err(error) => {
                tracing::warn!(%error, "reading the changed config failed; reloading anyway");
                Disk::Invalid
            }
        };
        match disk {
            Disk::Valid { same: true, files } if files == self.applied => {
                tracing::info!(
                    generation = serving.generation,
                    "config files changed on disk but match what is serving: nothing to reload"
                );
            }
            // Someone (POST /reload, SIGHUP right after the save) already
            // tried this file, and logged and counted the failure: don't
            // count it twice.
            Disk::Invalid
                if self.failed_seen.is_some() && failed_reloads(&self.app) > self.failed_seen =>
            {
                tracing::debug!("the changed config was already rejected by another reload");
            }
            disk => match self.app.reload().await {
                Ok(generation) => {
                    if let Disk::Valid { files, .. } = disk {
                        self.applied = files;
                    }
                    tracing::info!(generation, "file change: reload applied");
                }
                Err(errors) => tracing::warn!(
                    errors = errors.len(),
                    "file change: reload rejected, the old config keeps serving"
                ),
            },
        }
        self.rewatch(self.app.snapshot()).await;
    }

    /// Re-derives the watched set from `snapshot` (certificate paths may
    /// have changed).
    async fn rewatch(&mut self, snapshot: Arc<Snapshot>) {
        let Some(file) = snapshot.file.clone() else {
            return;
        };
        let Some(mut watched) = self.watched.take() else {
            return;
        };
        let names = self.names.clone();
        let generation = snapshot.generation;
        let updated = tokio::task::spawn_blocking(move || {
            watched.update(&Targets::of(&file, &snapshot.effective), &names);
            watched
        })
        .await;
        match updated {
            Ok(watched) => {
                self.watched = Some(watched);
                self.generation = generation;
            }
            Err(error) => {
                tracing::warn!(%error, "the config file watch stopped; reload with SIGHUP or POST /reload");
            }
        }
    }
}

/// Reads and validates the config file (blocking).
fn look(file: &Path, serving: &Value) -> Disk {
    match crate::config::load(file) {
        Ok(doc) => {
            let effective = serde_json::to_value(&doc.config).unwrap_or(Value::Null);
            let targets = Targets::of(file, &effective);
            Disk::Valid {
                same: !effective.is_null() && &effective == serving,
                files: fingerprint(&targets.files),
            }
        }
        Err(_) => Disk::Invalid,
    }
}

/// `weir_config_reloads_total{result="failed"}`, read back from the
/// registry (`None` if it cannot be rendered).
fn failed_reloads(app: &App) -> Option<u64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, app.registry()).ok()?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("weir_config_reloads_total{result=\"failed\"} "));
    match line {
        None => Some(0),
        Some(count) => count.trim().parse().ok(),
    }
}
