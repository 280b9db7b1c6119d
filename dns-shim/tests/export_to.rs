//! exportTo as Istio applies it, asked of the real binary with dig: an entry exported to its
//! own namespace (`.`), to a list, to all (`*`), to none (`~`), or not at all (the mesh
//! default, `*` or `.`), from a pod inside and outside each; the namespace given with
//! `--pod-namespace`, or taken from the first search domain as kubelet writes it.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::Shim;

/// name, exportTo, VIP; every entry lives in namespace `foo`.
const ENTRIES: [(&str, &[&str], &str); 5] = [
    ("own", &["."], "127.255.1.1"),
    ("listed", &["bar", "baz"], "127.255.1.2"),
    ("all", &["*"], "127.255.1.3"),
    ("none", &["~"], "127.255.1.4"),
    ("unset", &[], "127.255.1.5"),
];

fn write_entries(dir: &Path) {
    for (name, export_to, vip) in ENTRIES {
        let mut text = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: foo\nspec:\n  hosts:\n  - {name}.foo.global\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - name: http\n    number: 8000\n    protocol: HTTP\n  addresses:\n  - {vip}\n  endpoints:\n  - address: 198.18.0.1\n    ports:\n      http: 15443\n"
        );
        if !export_to.is_empty() {
            text.push_str("  exportTo:\n");
            for target in export_to {
                text.push_str(&format!("  - \"{target}\"\n"));
            }
        }
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
}

/// The hosts the shim answers, of the five.
fn answered(shim: &Shim) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, _, vip) in ENTRIES {
        let dig = shim.dig(&[&format!("{name}.foo.global"), "A"]);
        match dig.status.as_str() {
            "NOERROR" => {
                assert_eq!(dig.data("A"), [vip.to_string()], "{}", dig.text);
                out.push(name);
            }
            "NXDOMAIN" => {}
            other => panic!("{name}.foo.global: {other}: {}", dig.text),
        }
    }
    out
}

fn start(dir: &Path, extra: &[&str]) -> Shim {
    let mut args = vec![
        "--service-entries",
        dir.to_str().unwrap(),
        "--upstream",
        "127.0.0.1:9",
        "--upstream-timeout-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    let shim = Shim::start(&args);
    assert!(
        common::eventually(100, || shim.http("/readyz").0 == 200),
        "dns-shim not ready"
    );
    shim
}

#[test]
fn answers_follow_export_to_from_inside_and_outside() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path());
    // Mesh default `*`: unset is everyone's.
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--pod-namespace", "foo"], &["own", "all", "unset"]),
        (&["--pod-namespace", "bar"], &["listed", "all", "unset"]),
        (&["--pod-namespace", "qux"], &["all", "unset"]),
        // Not known: what is exported to all only.
        (&["--search-domain", "svc.cluster.local"], &["all", "unset"]),
    ];
    for (args, want) in cases {
        let shim = start(dir.path(), args);
        assert_eq!(answered(&shim), want, "{args:?}");
    }
    // Mesh default `.`: unset is its own namespace's.
    let own = ["--default-export-to", "."];
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--pod-namespace", "foo"], &["own", "all", "unset"]),
        (&["--pod-namespace", "bar"], &["listed", "all"]),
        (&["--pod-namespace", "qux"], &["all"]),
    ];
    for (args, want) in cases {
        let args = [args, &own[..]].concat();
        let shim = start(dir.path(), &args);
        assert_eq!(answered(&shim), want, "{args:?}");
    }
}

#[test]
fn the_namespace_comes_from_the_search_list_and_expansions_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path());
    let search = [
        "--search-domain",
        "bar.svc.cluster.local",
        "--search-domain",
        "svc.cluster.local",
    ];
    let shim = start(dir.path(), &search);
    assert_eq!(answered(&shim), ["listed", "all", "unset"]);
    // A visible host's search expansion is a CNAME to it; a hidden one's is not answered
    // locally (it goes upstream, dead here).
    let visible = shim.dig(&["listed.foo.global.bar.svc.cluster.local", "A"]);
    assert_eq!(visible.status, "NOERROR", "{}", visible.text);
    assert_eq!(visible.data("CNAME"), ["listed.foo.global."]);
    let hidden = shim.dig(&["own.foo.global.bar.svc.cluster.local", "A"]);
    assert_ne!(hidden.status, "NOERROR", "{}", hidden.text);
    assert!(hidden.data("CNAME").is_empty(), "{}", hidden.text);
}

#[test]
fn a_bad_pod_namespace_is_refused_naming_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dns-shim"))
        .args([
            "--service-entries",
            "/nonexistent",
            "--upstream",
            "127.0.0.1:9",
            "--pod-namespace",
            "Not_A_Namespace",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"Not_A_Namespace\""), "{stderr}");
}
