//! The size, depth and alias limits, against the oracle's verdicts in
//! `tests/data/kubectl/limits.json` (inputs are described there and rebuilt here).
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;

/// Where we deliberately differ: nesting deeper than the reader's limit of 1000 (kubectl: 10000),
/// refused so that no reader's stack can overflow.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "flow depth 9999",
        "nesting above policy::yaml::MAX_DEPTH (1000)",
    ),
    (
        "flow depth 10000",
        "nesting above policy::yaml::MAX_DEPTH (1000)",
    ),
    (
        "block depth 9998",
        "nesting above policy::yaml::MAX_DEPTH (1000)",
    ),
    (
        "block map depth 1000",
        "1001 nested mappings, above policy::yaml::MAX_DEPTH (1000)",
    ),
];

fn laughs(levels: usize, width: usize) -> String {
    let mut s = String::from("l0: &l0 [x]\n");
    for i in 1..=levels {
        let refs = vec![format!("*l{}", i - 1); width].join(", ");
        s.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    s
}

fn block(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&" ".repeat(i));
        s.push_str("a:\n");
    }
    s.push_str(&" ".repeat(n));
    s.push_str("b: 1\n");
    s
}

fn input(name: &str) -> Option<String> {
    let num = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.split(' ').next()?.parse::<usize>().ok())
    };
    Some(if let Some(n) = num("plain key length ") {
        format!("{}: 1\n", "k".repeat(n))
    } else if name == "quoted key length 1030" {
        format!("\"{}\": 1\n", "k".repeat(1028))
    } else if name == "flow key length 1030" {
        format!("{{{}: 1}}\n", "k".repeat(1030))
    } else if name == "long value 1 MiB" {
        format!("a: {}\n", "x".repeat(1 << 20))
    } else if name == "long line 100k flow items" {
        format!("a: [{}]\n", vec!["1"; 100_000].join(","))
    } else if let Some(n) = num("flow depth ") {
        format!("{}{}\n", "[".repeat(n), "]".repeat(n))
    } else if let Some(n) = num("block depth ").or_else(|| num("block map depth ")) {
        block(n)
    } else if let Some(l) = num("billion laughs ") {
        laughs(l, 10)
    } else if name == "many aliases small doc" {
        format!("a: &a x\nb: [{}]\n", vec!["*a"; 200].join(", "))
    } else if name == "many aliases 2000" {
        format!("a: &a x\nb: [{}]\n", vec!["*a"; 2000].join(", "))
    } else if name == "100k item block list" {
        format!("items:\n{}", "- {a: 1}\n".repeat(100_000))
    } else {
        return None;
    })
}

fn read_ok(text: &str) -> Result<usize, policy::yaml::Error> {
    let mut n = 0;
    for doc in policy::yaml::documents(text) {
        let node = doc?.read(|item| {
            let _ = item.to_value();
            n += 1;
        })?;
        if let Some(node) = node {
            node.to_value()?;
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn limits_match_kubectl() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("data/kubectl/limits.json")).expect("limits parse");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let Some(text) = input(name) else {
            failures.push(format!("{name}: no input generator"));
            continue;
        };
        let want_ok = case["kubectl_ok"].as_bool().unwrap_or(false);
        let got = read_ok(&text);
        let known = KNOWN_DIFFERENCES.iter().any(|(n, _)| *n == name);
        match (want_ok, &got, known) {
            (true, Ok(_), false) | (false, Err(_), false) => {}
            (true, Err(e), true) if e.message.contains("exceeded max depth of 1000") => {}
            (_, got, _) => failures.push(format!(
                "{name}: kubectl ok={want_ok}, we {:?}",
                got.as_ref().map_err(|e| e.located())
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The deepest input the reader accepts ([`policy::yaml::MAX_DEPTH`] levels) is read, converted
/// and decoded on a thread with the default stack of a spawned thread (2 MiB) in a release
/// build; also as the `status` of a ServiceEntry through `parse_str`, on the typed path and on
/// the path that names a field in error. Unoptimised code needs more for the recursion of typed
/// decoding (between 2 and 4 MiB): a debug build is held to a main thread's 8 MiB, which the
/// workers of `catalog::load_paths` get too.
#[test]
fn deepest_input_is_read_on_a_small_stack() {
    let stack = if cfg!(debug_assertions) {
        8 << 20
    } else {
        2 << 20
    };
    let levels = policy::yaml::MAX_DEPTH;
    let deep = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let entry = |extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: a}}\n\
             spec: {{hosts: [a.b.global]}}\n{extra}status: {}{}\n",
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    };
    let (good, bad) = (entry(""), entry("extra: 1\n"));
    let reader = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let document = policy::yaml::documents(&deep).next().unwrap().unwrap();
            let node = document.read(|_| {}).unwrap().unwrap();
            assert_eq!(
                node.to_value().unwrap(),
                node.deserialize::<Value>().unwrap()
            );
            let parsed = policy::parse_str(&good).unwrap();
            assert!(parsed[0].entry.as_ref().unwrap().status.is_some());
            let parsed = policy::parse_str(&bad).unwrap();
            assert_eq!(parsed[0].entry.as_ref().unwrap_err().path, "extra");
            // One level more is refused.
            let deeper = format!("[{deep}]");
            let err = policy::yaml::documents(&deeper)
                .next()
                .unwrap()
                .unwrap()
                .read(|_| {});
            assert!(err.is_err());
        })
        .unwrap();
    reader.join().unwrap();
}
