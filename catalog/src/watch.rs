//! Calls back when anything under a set of paths changes, including the symlink swap that
//! Kubernetes ConfigMap and Secret volumes make (`..data` is replaced, so the files themselves
//! never see an event): a file is watched through its directory.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// Events closer together than this are one change: an editor or kubelet writes in steps.
pub const SETTLE: Duration = Duration::from_millis(150);

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

/// What to watch for `path`: a directory itself (recursively), or a file's directory.
fn watch_target(path: &Path) -> (PathBuf, RecursiveMode) {
    if path.is_dir() {
        (path.to_path_buf(), RecursiveMode::Recursive)
    } else {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_path_buf(), RecursiveMode::NonRecursive)
    }
}

/// Runs `on_change` on a background thread after changes under `paths` settle.
pub fn watch<F>(paths: &[PathBuf], mut on_change: F) -> Result<WatchHandle, WatchError>
where
    F: FnMut() + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Opening and reading (the reload's own reads among them) change nothing; closing a
        // file written to does.
        let changed = match event {
            Ok(event) => !matches!(
                event.kind,
                EventKind::Access(
                    AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
                )
            ),
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
    for path in paths {
        let (target, mode) = watch_target(path);
        watcher.watch(&target, mode).map_err(|error| WatchError {
            path: target.clone(),
            error,
        })?;
    }
    std::thread::Builder::new()
        .name("catalog-watch".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // Let the burst settle, then act once for all of it.
                while rx.recv_timeout(SETTLE).is_ok() {}
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
    use std::time::Instant;

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

    #[test]
    fn sees_a_configmap_style_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/se.yaml"), "a").unwrap();
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/se.yaml", root.join("se.yaml")).unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let _handle = watch(&[root.join("se.yaml")], move || {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        // What kubelet does: write a new timestamped folder, then swap `..data` atomically.
        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/se.yaml"), "b").unwrap();
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert!(wait_for(&count, 1), "no callback after the swap");
    }
}
