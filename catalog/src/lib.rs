//! Native sources of ServiceEntries for the globalmesh servers and tools: files and directories,
//! and (feature `kubernetes`) the Kubernetes API.
//!
//! A directory is walked recursively for `.yaml`, `.yml` and `.json` files in name order.
//! Names starting with `.` are skipped: Kubernetes ConfigMap and Secret volumes keep their
//! real files under `..data/` and `..<timestamp>/` and expose them through symlinks at the top,
//! so reading the hidden folders too would read every entry twice.

#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "kubernetes")]
pub mod lease;
#[cfg(feature = "kubernetes")]
pub mod signal;
pub mod watch;

/// Where a server takes the cluster's ServiceEntries from.
#[cfg(feature = "kubernetes")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files and directories, watched for changes.
    Files(Vec<PathBuf>),
    /// The Kubernetes API, listed and watched.
    Kubernetes(kubernetes::Settings),
}

/// What keeps a server's catalog current: a file watcher, or the task that follows the
/// Kubernetes API ([`kubernetes::spawn`]). Either stops when this is dropped.
#[cfg(feature = "kubernetes")]
pub enum Follower {
    /// Held for its drop, which stops the watcher.
    Files(#[allow(dead_code)] watch::WatchHandle),
    Kubernetes(tokio::task::JoinHandle<()>),
}

#[cfg(feature = "kubernetes")]
impl Drop for Follower {
    fn drop(&mut self) {
        if let Follower::Kubernetes(task) = self {
            task.abort();
        }
    }
}

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use policy::document::{parse_str, DecodeError, ParseError};
use policy::ServiceEntry;

/// Files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The stack of a thread that parses files: a main thread's. Typed decoding recurses once per
/// level of nesting, and the deepest document the reader accepts needs under 1 MiB in a
/// release build but more than the 2 MiB of a spawned thread in a debug one.
const WORKER_STACK: usize = 8 << 20;

/// One ServiceEntry and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub source: PathBuf,
    /// 1-based YAML document number within the file.
    pub document: usize,
    pub entry: Result<ServiceEntry, DecodeError>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The underlying error is part of the message, not a `source`, so that error chains
    // printed with `{:#}` do not repeat it.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Parse { path: PathBuf, error: ParseError },
    #[error("{}: file is {size} bytes; the limit is {MAX_FILE_BYTES}", path.display())]
    TooLarge { path: PathBuf, size: u64 },
}

impl LoadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::Parse { path, .. }
            | LoadError::TooLarge { path, .. } => path,
        }
    }
}

/// Whether a file name has one of the extensions that a directory walk reads.
pub fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The files a path stands for: itself when it is a file (whatever its name), or the manifests
/// under it when it is a directory.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let meta = fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    walk(path, &mut visited, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), LoadError> {
    let io = |error| LoadError::Io {
        path: dir.to_path_buf(),
        error,
    };
    // Symlinked directories may form a cycle; visit each real directory once.
    let real = fs::canonicalize(dir).map_err(io)?;
    if !visited.insert(real) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for entry in entries {
        // A dangling symlink is skipped, as the walk would not have found a file there.
        let Ok(meta) = fs::metadata(&entry) else {
            continue;
        };
        if meta.is_dir() {
            walk(&entry, visited, out)?;
        } else if meta.is_file() && is_manifest(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Reads the ServiceEntries of one file. Its bytes are taken as `kubectl -f` takes them
/// ([`policy::yaml::decode_text`]: a BOM dropped, UTF-16 decoded, invalid UTF-8 replaced).
pub fn load_file(path: &Path) -> Result<Vec<Loaded>, LoadError> {
    let io = |error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let size = fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let bytes = fs::read(path).map_err(io)?;
    let text = policy::yaml::decode_text(&bytes);
    let parsed = parse_str(&text).map_err(|error| LoadError::Parse {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(parsed
        .into_iter()
        .map(|p| Loaded {
            source: path.to_path_buf(),
            document: p.document,
            entry: p.entry,
        })
        .collect())
}

/// Reads every ServiceEntry under `path` (a file or a directory). The first unreadable or
/// unparseable file ends the load with an error naming it.
pub fn load_path(path: &Path) -> Result<Vec<Loaded>, LoadError> {
    load_paths(&[path])
}

/// [`load_path`] over several paths: the entries in order of the paths, then of the files
/// under each, then of the documents in each. Files are parsed on as many threads as the
/// machine has cores (at most one per file); the error reported is that of the first bad file
/// in that order, whichever thread met it first.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Loaded>, LoadError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(files(path.as_ref())?);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(all.len());
    if threads <= 1 {
        let mut out = Vec::new();
        for file in &all {
            out.extend(load_file(file)?);
        }
        return Ok(out);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Vec<Loaded>, LoadError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .stack_size(WORKER_STACK)
                    .spawn_scoped(scope, || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = all.get(i) else { break };
                            done.push((i, load_file(file)));
                        }
                        done
                    })
                    .ok()
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    if results.len() != all.len() {
        // A worker panicked or could not be started: read what is left on this thread.
        let seen: HashSet<usize> = results.iter().map(|(i, _)| *i).collect();
        for (i, file) in all.iter().enumerate() {
            if !seen.contains(&i) {
                results.push((i, load_file(file)));
            }
        }
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    for (_, loaded) in results {
        out.extend(loaded?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: NAME\n  namespace: foo\nspec:\n  hosts: [NAME.bar.global]\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn walks_directories_recursively_for_manifests_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &SE.replace("NAME", "a"));
        write(dir.path(), "sub/b.yml", &SE.replace("NAME", "b"));
        write(
            dir.path(),
            "sub/c.json",
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"c"}}"#,
        );
        write(dir.path(), "notes.txt", "not yaml: [");
        let loaded = load_path(dir.path()).unwrap();
        let names: Vec<String> = loaded
            .iter()
            .map(|l| l.entry.as_ref().unwrap().key().name)
            .collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert!(loaded[1].source.ends_with("sub/b.yml"));
    }

    #[test]
    fn configmap_volume_layout_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "..2026_11_25/se.yaml", &SE.replace("NAME", "a"));
        std::os::unix::fs::symlink("..2026_11_25", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/se.yaml", dir.path().join("se.yaml")).unwrap();
        assert_eq!(load_path(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn parse_error_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "good.yaml", &SE.replace("NAME", "a"));
        let bad = write(dir.path(), "zbad.yaml", "kind: ServiceEntry\nspec: [\n");
        let err = load_path(dir.path()).unwrap_err();
        assert_eq!(err.path(), bad);
        let text = err.to_string();
        assert!(
            text.contains("zbad.yaml") && text.contains("line"),
            "{text}"
        );
    }

    #[test]
    fn many_files_load_in_order_and_the_first_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            let docs: Vec<String> = (0..5)
                .map(|j| SE.replace("NAME", &format!("e{i:02}x{j}")))
                .collect();
            write(dir.path(), &format!("f{i:02}.yaml"), &docs.join("---\n"));
        }
        let loaded = load_path(dir.path()).unwrap();
        let names: Vec<String> = loaded
            .iter()
            .map(|l| l.entry.as_ref().unwrap().key().name)
            .collect();
        let expected: Vec<String> = (0..40)
            .flat_map(|i| (0..5).map(move |j| format!("e{i:02}x{j}")))
            .collect();
        assert_eq!(names, expected);
        assert_eq!(loaded[7].document, 3);
        // Two bad files: the first in order is named, whichever is read first.
        write(dir.path(), "f05.yaml", "spec: [\n");
        let second = write(dir.path(), "f30.yaml", "spec: [\n");
        for _ in 0..5 {
            let err = load_path(dir.path()).unwrap_err();
            assert!(err.path().ends_with("f05.yaml"), "{err}");
        }
        assert!(second.exists());
    }

    #[test]
    fn missing_path_is_an_io_error_naming_it() {
        let err = load_path(Path::new("/nonexistent/se.yaml")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/se.yaml"), "{err}");
    }

    #[test]
    fn a_file_named_explicitly_is_read_whatever_its_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "se.txt", &SE.replace("NAME", "a"));
        assert_eq!(load_path(&path).unwrap().len(), 1);
    }

    #[test]
    fn binary_file_is_refused_by_name_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.yaml");
        fs::write(&path, [b'a', b':', b' ', 0x00, 0xff]).unwrap();
        let err = load_path(&path).unwrap_err();
        assert!(
            matches!(&err, LoadError::Parse { error, .. } if error.line == Some(1)),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn files_are_decoded_as_kubectl_decodes_them() {
        let dir = tempfile::tempdir().unwrap();
        let text = SE.replace("NAME", "a");
        let mut utf16 = vec![0xff, 0xfe];
        utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut bom = vec![0xef, 0xbb, 0xbf];
        bom.extend(text.as_bytes());
        // Invalid UTF-8 in a comment is replaced, as kubectl replaces it.
        let mut latin1 = b"# caf\xe9\n".to_vec();
        latin1.extend(text.as_bytes());
        for (name, bytes) in [
            ("utf16.yaml", utf16),
            ("bom.yaml", bom),
            ("latin1.yaml", latin1),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            let loaded = load_path(&path).unwrap();
            assert_eq!(loaded.len(), 1, "{name}");
            assert_eq!(
                loaded[0].entry.as_ref().unwrap().spec.hosts,
                ["a.bar.global"],
                "{name}"
            );
        }
    }
}
