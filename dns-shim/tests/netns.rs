//! The glibc resolver as a client: a network namespace whose resolv.conf points at dns-shim,
//! queried with `getent ahosts`. Needs root (CI runs as root); skipped with a message otherwise.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::{seed, Shim};

struct Namespace {
    name: String,
    etc: PathBuf,
}

impl Namespace {
    fn create(name: &str) -> Self {
        // A namespace left over from a killed run would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        let status = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        let ns = Namespace {
            name: name.to_string(),
            etc: PathBuf::from("/etc/netns").join(name),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        fs::create_dir_all(&ns.etc).unwrap();
        ns
    }

    fn resolv_conf(&self, text: &str) {
        fs::write(self.etc.join("resolv.conf"), text).unwrap();
    }

    fn command(&self) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]);
        command
    }

    fn exec(&self, args: &[&str]) -> (bool, String) {
        let output = self.command().args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = fs::remove_dir_all(&self.etc);
    }
}

// `make test` runs it with --include-ignored when it runs as root, as CI does.
#[test]
#[ignore = "needs root: network namespaces"]
fn glibc_resolves_global_names_directly_and_through_the_search_list() {
    let ns = Namespace::create(&format!("dnsshim{}", std::process::id()));
    ns.resolv_conf(
        "nameserver 127.0.0.1\nsearch foo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:1\n",
    );
    let direct = seed("serviceentry-direct.yaml");
    // Inside the namespace, /etc/resolv.conf is the namespace's: the shim takes its search list
    // from there and skips its own address among the nameservers. The upstream is a dead port.
    let shim = Shim::start_with(
        ns.command(),
        &[
            "--listen",
            "127.0.0.1:53",
            "--admin",
            "127.0.0.1:15054",
            "--service-entries",
            direct.to_str().unwrap(),
            "--upstream",
            "127.0.0.1:5399",
            "--upstream-timeout-ms",
            "300",
        ],
    );
    // ndots:5: glibc asks for httpbin.bar.global.foo.svc.cluster.local first.
    let (ok, out) = ns.exec(&["getent", "ahosts", "httpbin.bar.global"]);
    assert!(
        ok && out.contains("127.255.0.2"),
        "getent with ndots:5: {out}"
    );
    let (_, metrics) = ns.exec(&["curl", "-s", "http://127.0.0.1:15054/metrics"]);
    if !metrics.is_empty() {
        // Every query of the ndots:5 walk was answered locally.
        assert!(
            metrics.contains("dns_upstream_requests_total{upstream=\"127.0.0.1:5399\"} 0\n"),
            "the search-list lookup went upstream: {metrics}"
        );
    }

    // ndots:1: the name is asked as is.
    ns.resolv_conf("nameserver 127.0.0.1\noptions ndots:1 timeout:2 attempts:1\n");
    let (ok, out) = ns.exec(&["getent", "ahosts", "httpbin.bar.global"]);
    assert!(
        ok && out.contains("127.255.0.2"),
        "getent with ndots:1: {out}"
    );
    let (ok, out) = ns.exec(&["getent", "ahosts", "nope.baz.global"]);
    assert!(!ok && out.is_empty(), "an unknown .global name: {out}");
    drop(shim);
}
