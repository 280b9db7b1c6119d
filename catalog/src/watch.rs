//! Calls back when what a set of paths stands for changes, including the symlink swap that
//! Kubernetes ConfigMap and Secret volumes make (`..data` is replaced, so the files themselves
//! never see an event): a file is watched through its directory.
//!
//! Only events about the watched files, the manifests of a watched directory and the volume's
//! `..` entries count. Anything else written beside them (a log file, an editor's swap file)
//! is ignored: reacting to it could make a reload write a log line that causes the next one.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::is_manifest;

/// Events closer together than this are one change: an editor or kubelet writes in steps.
pub const SETTLE: Duration = Duration::from_millis(150);
/// The longest a change waits for the events after it to settle: a writer that never pauses
/// (a file rewritten every 100 ms) would otherwise postpone every reload while it writes.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// Keeps the watch alive; dropping it stops the callbacks.
pub struct WatchHandle {
    _watcher: RecommendedWatcher,
}

#[derive(Debug, thiserror::Error)]
#[error("watching {}: {error}", path.display())]
pub struct WatchError {
    pub path: PathBuf,
    pub error: notify::Error,
}

/// One watched path, as the events will name it (its directory made canonical, since notify
/// builds event paths from the path it was given).
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A file: watched through its directory, recursively not.
    File { dir: PathBuf, name: OsString },
    /// A directory of manifests, watched recursively.
    Dir(PathBuf),
}

impl Target {
    fn of(path: &Path) -> Target {
        if path.is_dir() {
            return Target::Dir(canonical(path));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Target::File {
            dir: canonical(dir),
            name: path.file_name().map(OsString::from).unwrap_or_default(),
        }
    }

    fn watched(&self) -> (&Path, RecursiveMode) {
        match self {
            Target::File { dir, .. } => (dir, RecursiveMode::NonRecursive),
            Target::Dir(dir) => (dir, RecursiveMode::Recursive),
        }
    }

    /// Whether an event about `path` can change what this target stands for.
    fn cares_about(&self, path: &Path, kind: &EventKind) -> bool {
        match self {
            // The directory itself removed or moved away.
            Target::File { dir, .. } | Target::Dir(dir) if path == dir => true,
            Target::File { dir, name } => {
                path.parent() == Some(dir.as_path())
                    && (path.file_name() == Some(name.as_os_str()) || is_volume_entry(path))
            }
            Target::Dir(dir) => {
                let Ok(inside) = path.strip_prefix(dir) else {
                    return false;
                };
                is_manifest(path)
                    || path.is_dir()
                    || inside.components().any(|c| is_volume_entry(Path::new(&c)))
                    || match kind {
                        EventKind::Create(CreateKind::Folder)
                        | EventKind::Remove(RemoveKind::Folder) => true,
                        // Gone or renamed, so no longer there to look at: a folder, or a link
                        // to one, has no extension.
                        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                            path.extension().is_none()
                        }
                        _ => false,
                    }
            }
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `..data`, `..data_tmp` and the timestamped `..2026_11_26_...` folders of a Kubernetes
/// volume's atomic writer.
fn is_volume_entry(path: &Path) -> bool {
    match path.components().next_back() {
        Some(Component::Normal(name)) => name.to_string_lossy().starts_with(".."),
        _ => false,
    }
}

/// Whether `event` may change what one of `targets` stands for.
fn matters(event: &Event, targets: &[Target]) -> bool {
    // Opening and reading (the reload's own reads among them) change nothing; closing a file
    // written to does.
    if matches!(
        event.kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    ) {
        return false;
    }
    // An event without paths (the kernel's queue overflowed) may hide anything.
    event.paths.is_empty()
        || event.need_rescan()
        || event
            .paths
            .iter()
            .any(|path| targets.iter().any(|t| t.cares_about(path, &event.kind)))
}

/// Runs `on_change` on a background thread after changes to what `paths` stand for settle:
/// the files themselves, or the manifests under a directory (see [`crate::files`]).
pub fn watch<F>(paths: &[PathBuf], mut on_change: F) -> Result<WatchHandle, WatchError>
where
    F: FnMut() + Send + 'static,
{
    let targets: Vec<Target> = paths.iter().map(|p| Target::of(p)).collect();
    let (tx, rx) = mpsc::channel::<()>();
    let filter = targets.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let changed = match event {
            Ok(event) => matters(&event, &filter),
            Err(_) => true,
        };
        if changed {
            let _ = tx.send(());
        }
    })
    .map_err(|error| WatchError {
        path: PathBuf::new(),
        error,
    })?;
    for target in &targets {
        let (path, mode) = target.watched();
        watcher.watch(path, mode).map_err(|error| WatchError {
            path: path.to_path_buf(),
            error,
        })?;
    }
    std::thread::Builder::new()
        .name("catalog-watch".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // Let the burst settle, then act once for all of it; but no later than MAX_WAIT
                // after its first event.
                let deadline = Instant::now() + MAX_WAIT;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || rx.recv_timeout(SETTLE.min(left)).is_err() {
                        break;
                    }
                }
                on_change();
            }
        })
        .map_err(|e| WatchError {
            path: PathBuf::new(),
            error: notify::Error::io(e),
        })?;
    Ok(WatchHandle { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn wait_for(count: &AtomicUsize, at_least: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if count.load(Ordering::SeqCst) >= at_least {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Counts callbacks of a watch on `paths`.
    fn counting(paths: &[PathBuf]) -> (Arc<AtomicUsize>, WatchHandle) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let handle = watch(paths, move || {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        (count, handle)
    }

    /// Writes what should be ignored, gives a callback time to come, then makes one change
    /// that counts: exactly one callback means the first writes were ignored.
    fn only_the_change_counts(count: &AtomicUsize, ignored: impl Fn(), change: impl Fn()) {
        ignored();
        std::thread::sleep(SETTLE * 4);
        change();
        assert!(wait_for(count, 1), "no callback after the change");
        std::thread::sleep(SETTLE * 4);
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "a callback for what is ignored"
        );
    }

    #[test]
    fn a_file_beside_the_watched_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let entries = dir.path().join("entries.yaml");
        std::fs::write(&entries, "a").unwrap();
        let (count, _handle) = counting(std::slice::from_ref(&entries));
        only_the_change_counts(
            &count,
            || {
                for i in 0..3 {
                    std::fs::write(dir.path().join("webhook.log"), format!("line {i}")).unwrap();
                    std::fs::write(dir.path().join("other.yaml"), "x").unwrap();
                }
            },
            || std::fs::write(&entries, "b").unwrap(),
        );
    }

    #[test]
    fn a_file_target_cares_about_its_name_and_the_volume_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("entries.yaml"), "a").unwrap();
        let target = Target::of(&dir.path().join("entries.yaml"));
        let Target::File { dir: watched, name } = &target else {
            panic!("a file is watched as one: {target:?}");
        };
        assert_eq!(watched, &canonical(dir.path()));
        assert_eq!(name, "entries.yaml");
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(target.cares_about(&watched.join("entries.yaml"), &modify));
        assert!(target.cares_about(&watched.join("..data"), &modify));
        assert!(!target.cares_about(&watched.join("entries.yaml.swp"), &modify));
        assert!(!target.cares_about(&watched.join("sub/entries.yaml"), &modify));
    }

    #[test]
    fn in_a_directory_only_manifests_and_folders_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let (count, _handle) = counting(&[dir.path().to_path_buf()]);
        only_the_change_counts(
            &count,
            || {
                std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
                std::fs::write(dir.path().join("sub/dns-shim.log"), "x").unwrap();
            },
            || std::fs::write(dir.path().join("sub/new.yaml"), "x").unwrap(),
        );
        std::fs::remove_file(dir.path().join("sub/new.yaml")).unwrap();
        assert!(
            wait_for(&count, 2),
            "no callback after a manifest was removed"
        );
        std::thread::sleep(SETTLE * 4);
        let before = count.load(Ordering::SeqCst);
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        assert!(
            wait_for(&count, before + 1),
            "no callback after a folder was removed"
        );
    }

    #[test]
    fn a_folder_moved_out_of_the_directory_counts() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("entries");
        std::fs::create_dir_all(watched.join("team-a")).unwrap();
        std::fs::write(watched.join("team-a/a.yaml"), "a").unwrap();
        let (count, _handle) = counting(std::slice::from_ref(&watched));
        std::fs::rename(watched.join("team-a"), dir.path().join("team-a")).unwrap();
        assert!(wait_for(&count, 1), "no callback after a folder moved out");
    }

    #[test]
    fn a_file_that_appears_after_the_watch_began_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (count, _handle) = counting(&[dir.path().join("later.yaml")]);
        std::fs::write(dir.path().join("later.yaml"), "a").unwrap();
        assert!(wait_for(&count, 1), "no callback after the file appeared");
    }

    #[test]
    fn a_steady_stream_of_changes_still_calls_back_within_the_maximum_wait() {
        let dir = tempfile::tempdir().unwrap();
        let entries = dir.path().join("entries.yaml");
        std::fs::write(&entries, "a").unwrap();
        let (count, _handle) = counting(std::slice::from_ref(&entries));
        // Writes every 50 ms (closer than SETTLE) for five maximum waits: bounded in count.
        let writes = (MAX_WAIT * 5).as_millis() / 50;
        for i in 0..writes {
            std::fs::write(&entries, format!("{i}")).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        // Without the maximum wait there would be no callback until the writes stop.
        assert!(
            count.load(Ordering::SeqCst) >= 2,
            "{} callbacks while the file kept changing",
            count.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn sees_a_configmap_style_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/se.yaml"), "a").unwrap();
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/se.yaml", root.join("se.yaml")).unwrap();
        // What kubelet does: write a new timestamped folder (before the watch here, so that
        // only the swap can call back), then swap `..data` atomically.
        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/se.yaml"), "b").unwrap();
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        let (count, _handle) = counting(&[root.join("se.yaml")]);
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert!(wait_for(&count, 1), "no callback after the swap");
    }
}
