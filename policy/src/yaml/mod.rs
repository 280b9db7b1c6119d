//! A YAML reader that reads YAML exactly as `kubectl -f` and kube-apiserver do:
//! sigs.k8s.io/yaml's `YAMLToJSON` over go-yaml v2.4, with kubectl's document splitting.
//!
//! ```text
//! bytes ──decode_text──▶ text ──documents──▶ Document ──read──▶ Node ──to_value / deserialize──▶ JSON / T
//!                              (text.rs,         (scanner.rs → parser.rs     (node.rs, de.rs)
//!                               stream.rs,        → compose.rs; json.rs
//!                               json.rs)          for JSON streams)
//! ```
//!
//! What is read is what the API server would see: `yes` and `on` are `true`, `0777` is 511,
//! `1e3` and `8000.0` are the integer 1000 and 8000, merge keys apply in go-yaml's order,
//! duplicate keys keep the last value, keys become strings (`1.0:` is `"1"`), `.inf` is an
//! error, `[001:db8::]` is a list of one string and `[a?b]` is an error. See each module's
//! documentation for the rules it follows and where they come from, and
//! `policy/tests/kubectl_cases.rs` for the oracle cases produced by the real Go libraries.
//!
//! Modules by concern:
//! * `text.rs`: kubectl's decoding of bytes, its `---` splitting, go-yaml's character check.
//! * `stream.rs`: [`documents`], [`Document`]: the `YAMLOrJSONDecoder` stream layer.
//! * `scanner.rs`, `parser.rs`: go-yaml's scanner and parser (tokens, events).
//! * `resolve.rs`: what scalars and tags mean; numbers and keys as YAMLToJSON writes them.
//! * `compose.rs`: events to compact nodes: anchors, aliases and their limits, merge-key
//!   checks, streaming of a `kind: List`'s `items`.
//! * `json.rs`: JSON documents (a stream starting with `{`).
//! * `node.rs`: [`Node`], conversion to `serde_json::Value`.
//! * `de.rs`: typed decoding without building a `Value`.
//! * `error.rs`: [`Error`].
//!
//! Nothing here panics on any input, allocates without bound on any input, or takes more than
//! linear time (up to sorting map keys); nesting deeper than [`MAX_DEPTH`] (1000; kubectl
//! allows 10000) is refused. Reading and [`Node::to_value`] use explicit stacks, not recursion;
//! serde-driven decoding recurses once per level of the value, which at 1000 levels takes
//! under 1 MiB of stack in a release build: fine for a main thread (8 MiB) or a spawned one
//! (2 MiB; `policy/tests/yaml_limits.rs` decodes the deepest input on one).
//!
//! Speed: plain scalars are borrowed from the text, the common `key: value` is one token
//! (`scanner.rs`), events go straight from the parser to the composer, and typed decoding
//! walks the compact tape without building a `serde_json::Value`
//! (`benches/examples/load_yaml.rs` times it as the servers use it).

#![forbid(unsafe_code)]

mod compose;
mod de;
mod error;
mod json;
mod node;
mod parser;
mod resolve;
mod scanner;
mod stream;
mod text;

pub use de::NodeDeserializer;
pub use error::Error;
pub use node::Node;
pub use scanner::MAX_DEPTH;
pub use stream::{documents, Document, Documents};
pub use text::decode_text;

/// What the tests of the modules share: reading a text as kubectl sends it.
#[cfg(test)]
pub(crate) mod testutil {
    use serde_json::Value;

    use super::{documents, Error};

    /// The documents of `text` as kubectl would send them: `items` streamed by `read` are
    /// put back in place; null documents are skipped.
    pub(crate) fn read(text: &str) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        for doc in documents(text) {
            let mut items = Vec::new();
            let mut bad = None;
            let node = doc?.read(|n| match n.to_value() {
                Ok(v) => items.push(v),
                Err(e) => bad = Some(e),
            })?;
            if let Some(e) = bad {
                return Err(e);
            }
            if let Some(node) = node {
                let mut v = node.to_value()?;
                if !items.is_empty() {
                    if let Some(o) = v.as_object_mut() {
                        o.insert("items".into(), Value::Array(items));
                    }
                }
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The value of a text of one document (`null` if it has none).
    pub(crate) fn one(text: &str) -> Result<Value, Error> {
        let mut docs = read(text)?;
        assert!(docs.len() <= 1, "{text:?} has {} documents", docs.len());
        Ok(docs.pop().unwrap_or(Value::Null))
    }
}
