//! Property tests: typed decoding agrees with `to_value` + `serde_json::from_value` on
//! generated YAML, and no input (arbitrary or YAML-like) makes the reader panic or hang.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

/// A scalar as it may be written in YAML (plain, quoted, numbers in go-yaml's forms...).
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("yes".to_owned()),
        Just("on".to_owned()),
        Just("~".to_owned()),
        Just("0777".to_owned()),
        Just("08".to_owned()),
        Just("1e3".to_owned()),
        Just("8000.0".to_owned()),
        Just("1.5".to_owned()),
        Just("-0.0".to_owned()),
        Just(".inf".to_owned()),
        Just("0x1F".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("'quoted'".to_owned()),
        Just("\"esc\\t\\u00e9\"".to_owned()),
        Just("!!str 12".to_owned()),
        Just("!!int '7'".to_owned()),
        Just("2001-12-14".to_owned()),
        Just("".to_owned()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u32>().prop_map(|i| format!("{}.0", i)),
        "[a-z][a-z0-9.-]{0,12}",
        "[a-z]+ [a-z]+",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-e]",
        Just("items".to_owned()),
        Just("1".to_owned()),
        Just("'1'".to_owned()),
        Just("y".to_owned()),
        Just("1.0".to_owned()),
        Just("true".to_owned()),
        Just("b".to_owned()),
    ]
}

#[derive(Debug, Clone)]
enum Tree {
    Scalar(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
    Merge(Vec<(String, Tree)>, Vec<(String, Tree)>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = scalar().prop_map(Tree::Scalar);
    leaf.prop_recursive(4, 40, 6, |inner| {
        let entries = move || prop::collection::vec((key(), inner.clone()), 1..6);
        prop_oneof![
            entries().prop_map(Tree::Map),
            (entries(), entries()).prop_map(|(a, b)| Tree::Merge(a, b)),
            entries().prop_map(|e| Tree::Seq(e.into_iter().map(|(_, v)| v).collect())),
        ]
    })
}

/// Flow style: always valid YAML for these scalars.
fn flow(t: &Tree, out: &mut String) {
    match t {
        Tree::Scalar(s) if s.is_empty() => out.push_str("''"),
        Tree::Scalar(s) => out.push_str(s),
        Tree::Seq(v) => {
            out.push('[');
            for (i, e) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(e, out);
            }
            out.push(']');
        }
        Tree::Map(m) => entries(m, out, None),
        Tree::Merge(base, m) => entries(m, out, Some(base)),
    }
}

fn entries(m: &[(String, Tree)], out: &mut String, merge: Option<&Vec<(String, Tree)>>) {
    out.push('{');
    let mut first = true;
    if let Some(base) = merge {
        out.push_str("<<: ");
        entries(base, out, None);
        first = false;
    }
    for (k, v) in m {
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(k);
        out.push_str(": ");
        flow(v, out);
    }
    out.push('}');
}

/// Block style where it is simple (mappings and sequences of flow values).
fn block(t: &Tree, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match t {
        Tree::Map(m) if !m.is_empty() => {
            for (k, v) in m {
                out.push_str(&format!("{pad}{k}:"));
                match v {
                    Tree::Map(inner) if !inner.is_empty() => {
                        out.push('\n');
                        block(v, indent + 2, out);
                    }
                    Tree::Seq(inner) if !inner.is_empty() => {
                        out.push('\n');
                        block(v, indent, out);
                    }
                    _ => {
                        out.push(' ');
                        flow(v, out);
                        out.push('\n');
                    }
                }
            }
        }
        Tree::Seq(v) if !v.is_empty() => {
            for e in v {
                out.push_str(&format!("{pad}- "));
                let mut s = String::new();
                flow(e, &mut s);
                out.push_str(&s);
                out.push('\n');
            }
        }
        _ => {
            out.push_str(&pad);
            flow(t, out);
            out.push('\n');
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
struct Typed {
    a: Option<Value>,
    b: Option<String>,
    c: Option<Vec<Value>>,
    d: Option<BTreeMap<String, Value>>,
    e: Option<f64>,
    items: Option<Vec<Value>>,
    #[serde(rename = "1")]
    one: Option<i64>,
    #[serde(rename = "true")]
    yes: Option<bool>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Strict {
    a: Option<u32>,
    b: Option<String>,
    c: Option<Vec<String>>,
}

fn check_agreement(text: &str) -> Result<(), TestCaseError> {
    for doc in policy::yaml::documents(text) {
        let Ok(doc) = doc else { return Ok(()) };
        let Ok(node) = doc.read(|_| {}) else {
            return Ok(());
        };
        let Some(node) = node else { continue };
        let value = node.to_value();
        let ours = node.deserialize::<Value>();
        match (&value, &ours) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "to_value {:?} but deserialize {:?}", value, ours),
        }
        let theirs_typed = value
            .as_ref()
            .map_err(|_| ())
            .and_then(|v| serde_json::from_value::<Typed>(v.clone()).map_err(|_| ()));
        match (node.deserialize::<Typed>(), theirs_typed) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Ok(a), Err(())) => prop_assert!(false, "typed Ok({:?}) where from_value fails", a),
            (Err(_), _) => {}
        }
        let theirs_strict = value
            .as_ref()
            .map_err(|_| ())
            .and_then(|v| serde_json::from_value::<Strict>(v.clone()).map_err(|_| ()));
        match (node.deserialize::<Strict>(), theirs_strict) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Ok(a), Err(())) => prop_assert!(false, "strict Ok({:?}) where from_value fails", a),
            (Err(_), _) => {}
        }
        // str_field agrees with the value.
        if let Ok(Value::Object(m)) = &value {
            for k in ["a", "b", "items", "1", "true"] {
                prop_assert_eq!(node.str_field(k), m.get(k).and_then(Value::as_str));
            }
        }
    }
    Ok(())
}

/// Reading never panics; whatever reads can be converted both ways.
fn no_panic(text: &str) -> Result<(), TestCaseError> {
    for doc in policy::yaml::documents(text) {
        let Ok(doc) = doc else { break };
        let mut items = 0;
        if let Ok(Some(node)) = doc.read(|n| {
            let _ = n.to_value();
            items += 1;
        }) {
            let _ = node.to_value();
            let _ = node.deserialize::<Value>();
            let _ = node.str_field("kind");
        }
    }
    Ok(())
}

fn yamlish() -> impl Strategy<Value = String> {
    let frag = prop_oneof![
        Just("a"),
        Just("b"),
        Just(":"),
        Just(": "),
        Just(" "),
        Just("  "),
        Just("\n"),
        Just("\n  "),
        Just("- "),
        Just("-"),
        Just("["),
        Just("]"),
        Just("{"),
        Just("}"),
        Just(","),
        Just("? "),
        Just("#"),
        Just("&x "),
        Just("*x"),
        Just("!!str "),
        Just("!"),
        Just("'"),
        Just("\""),
        Just("|"),
        Just(">-"),
        Just("---"),
        Just("--- "),
        Just("..."),
        Just("\t"),
        Just("\r\n"),
        Just("\r"),
        Just("<<: "),
        Just("%YAML 1.1\n"),
        Just("1e3"),
        Just("0x1F"),
        Just("yes"),
        Just("~"),
        Just("\\"),
        Just("é"),
        Just("\u{feff}"),
        Just("\u{2028}"),
        Just("items: "),
        Just("kind: List\n"),
        Just("@"),
        Just("{\"a\": 1}"),
        Just("\u{85}"),
        Just("\u{1}"),
    ];
    prop::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn typed_decoding_agrees_flow(t in tree()) {
        let mut s = String::new();
        flow(&t, &mut s);
        check_agreement(&s)?;
    }

    #[test]
    fn typed_decoding_agrees_block(t in tree()) {
        let mut s = String::new();
        block(&t, 0, &mut s);
        check_agreement(&s)?;
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        no_panic(&s)?;
    }

    #[test]
    fn yaml_like_text_never_panics(s in yamlish()) {
        no_panic(&s)?;
        check_agreement(&s)?;
    }

    #[test]
    fn arbitrary_bytes_decode(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = policy::yaml::decode_text(&b);
        no_panic(&text)?;
    }
}
