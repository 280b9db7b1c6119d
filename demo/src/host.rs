//! What the scenario creates on the machine — network namespaces, a veth pair, per-namespace
//! resolv.conf, iptables rules, processes, files — recorded so that all of it is removed again,
//! also when the run is interrupted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}`: {error}")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Runs a command to completion; its output, or an error with what it printed.
pub fn run(program: &str, args: &[&str]) -> Result<String, HostError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| HostError::Spawn {
            command: command.clone(),
            error,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(HostError::Command {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Runs a command inside a network namespace.
pub fn run_in(netns: &str, program: &str, args: &[&str]) -> Result<String, HostError> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

#[derive(Default)]
struct Created {
    namespaces: Vec<String>,
    links: Vec<String>,
    paths: Vec<PathBuf>,
    children: Vec<(String, Child)>,
}

/// Everything the scenario created, removed by [`Host::clean`] or when the last handle drops.
#[derive(Clone, Default)]
pub struct Host {
    created: Arc<Mutex<Created>>,
}

impl Host {
    fn lock(&self) -> std::sync::MutexGuard<'_, Created> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a network namespace with loopback up, replacing one left by an earlier run.
    pub fn namespace(&self, name: &str) -> Result<(), HostError> {
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "add", name])?;
        self.lock().namespaces.push(name.to_string());
        run_in(name, "ip", &["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Connects two namespaces with a veth pair and gives each end an address (CIDR form).
    pub fn link(&self, a: (&str, &str), b: (&str, &str)) -> Result<(), HostError> {
        let a_if = format!("{}-eth", a.0);
        let b_if = format!("{}-eth", b.0);
        let _ = run("ip", &["link", "del", &a_if]);
        run(
            "ip",
            &["link", "add", &a_if, "type", "veth", "peer", "name", &b_if],
        )?;
        self.lock().links.push(a_if.clone());
        for ((netns, address), iface) in [(a, &a_if), (b, &b_if)] {
            run("ip", &["link", "set", iface, "netns", netns])?;
            run_in(netns, "ip", &["addr", "add", address, "dev", iface])?;
            run_in(netns, "ip", &["link", "set", iface, "up"])?;
        }
        Ok(())
    }

    /// Writes `/etc/netns/<netns>/resolv.conf`, which `ip netns exec` mounts over
    /// `/etc/resolv.conf` for every process of the namespace.
    pub fn resolv_conf(&self, netns: &str, text: &str) -> Result<(), HostError> {
        let dir = Path::new("/etc/netns").join(netns);
        fs::create_dir_all(&dir).map_err(|error| HostError::File {
            path: dir.clone(),
            error,
        })?;
        self.lock().paths.push(dir.clone());
        let path = dir.join("resolv.conf");
        fs::write(&path, text).map_err(|error| HostError::File { path, error })
    }

    /// A folder removed at clean-up.
    pub fn own_path(&self, path: &Path) {
        self.lock().paths.push(path.to_path_buf());
    }

    /// Starts a long-running process in a namespace (or on the host when `netns` is `None`),
    /// its output appended to `log`.
    pub fn spawn(
        &self,
        name: &str,
        netns: Option<&str>,
        argv: &[String],
        log: &Path,
    ) -> Result<(), HostError> {
        let file = fs::File::create(log).map_err(|error| HostError::File {
            path: log.to_path_buf(),
            error,
        })?;
        let err = file.try_clone().map_err(|error| HostError::File {
            path: log.to_path_buf(),
            error,
        })?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let (program, args) = argv.split_first().ok_or_else(|| HostError::Spawn {
                    command: name.to_string(),
                    error: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "empty command line",
                    ),
                })?;
                let mut c = Command::new(program);
                c.args(args);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|error| HostError::Spawn {
                command: argv.join(" "),
                error,
            })?;
        self.lock().children.push((name.to_string(), child));
        Ok(())
    }

    /// Stops the named process (to restart it with a new configuration).
    pub fn stop(&self, name: &str) {
        let mut created = self.lock();
        let mut kept = Vec::new();
        for (n, mut child) in created.children.drain(..) {
            if n == name {
                let _ = child.kill();
                let _ = child.wait();
            } else {
                kept.push((n, child));
            }
        }
        created.children = kept;
    }

    /// The started processes that still run, by name, with their ids: equal before and after
    /// a step means nothing was restarted in it.
    pub fn processes(&self) -> Vec<(String, u32)> {
        self.lock()
            .children
            .iter()
            .map(|(n, c)| (n.clone(), c.id()))
            .collect()
    }

    /// Names of started processes that have exited.
    pub fn exited(&self) -> Vec<String> {
        self.lock()
            .children
            .iter_mut()
            .filter_map(|(n, c)| (!matches!(c.try_wait(), Ok(None))).then(|| n.clone()))
            .collect()
    }

    /// Removes everything, in reverse order of creation. Safe to call more than once.
    pub fn clean(&self) {
        let mut created = self.lock();
        let children: Vec<(String, Child)> = created.children.drain(..).rev().collect();
        for (_, child) in &children {
            // A polite stop first, so that process managers (gunicorn) stop their workers.
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
        }
        for (_, mut child) in children {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for link in created.links.drain(..) {
            let _ = run("ip", &["link", "del", &link]);
        }
        for netns in created.namespaces.drain(..).rev() {
            // Whatever still runs inside (a worker whose parent is gone) goes with it.
            if let Ok(pids) = run("ip", &["netns", "pids", &netns]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-KILL", pid]);
                }
            }
            let _ = run("ip", &["netns", "del", &netns]);
        }
        for path in created.paths.drain(..).rev() {
            let _ = fs::remove_dir_all(&path);
        }
    }

    /// Whether anything is still recorded as created.
    pub fn is_clean(&self) -> bool {
        let created = self.lock();
        created.namespaces.is_empty()
            && created.links.is_empty()
            && created.paths.is_empty()
            && created.children.is_empty()
    }
}

/// Whether this process runs as root (network namespaces need it).
pub fn is_root() -> bool {
    run("id", &["-u"]).is_ok_and(|out| out.trim() == "0")
}
