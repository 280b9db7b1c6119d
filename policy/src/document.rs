//! Reading ServiceEntries out of text as people keep them: one YAML document, several, JSON, or a
//! `kind: List` as `kubectl get -o yaml|json` prints it. Objects of other kinds are skipped.
//!
//! Two kinds of failure are kept apart: text that is not YAML or JSON at all ([`ParseError`]),
//! and a ServiceEntry that does not fit the schema ([`DecodeError`], with the field path), which
//! is reported like any other rule so the other entries of the file are still checked.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::finding::{Finding, Rule};
use crate::model::{check_type, is_service_entry_type, ObjectKey, ServiceEntry, TypeError};

/// Nesting of `kind: List` inside `kind: List` that is still followed.
const MAX_LIST_DEPTH: usize = 8;

/// Text that could not be read as YAML or JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(*line, *column))]
pub struct ParseError {
    /// 1-based line, where the parser gives one.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line} column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        _ => String::new(),
    }
}

/// A ServiceEntry object that does not decode into the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {path}: {message}")]
pub struct DecodeError {
    pub key: ObjectKey,
    pub path: String,
    pub message: String,
}

impl DecodeError {
    pub fn to_finding(&self) -> Finding {
        Finding::error(Rule::Decode, self.path.clone(), self.message.clone())
    }
}

/// One ServiceEntry found in a text, or why the object is not a valid one.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// 1-based number of the YAML document (or 1 for JSON) that held the object.
    pub document: usize,
    pub entry: Result<ServiceEntry, DecodeError>,
}

/// Every ServiceEntry in `text`, in order. JSON is recognised by a leading `{` or `[`.
///
/// The text is read in one pass: the items of a `kind: List` are decoded one at a time as the
/// parser reaches them, so a large list is never held as one tree of values. A syntax error
/// anywhere in a document is reported before what is wrong with its shape.
pub fn parse_str(text: &str) -> Result<Vec<Parsed>, ParseError> {
    let mut found = Found::default();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut reader = serde_json::Deserializer::from_str(trimmed);
        Objects::top(1, &mut found)
            .deserialize(&mut reader)
            .and_then(|()| reader.end())
            .map_err(|e| {
                // Line numbers count from the trimmed text; add back the leading lines.
                let skipped = text.len() - trimmed.len();
                let offset = text[..skipped].matches('\n').count();
                ParseError {
                    line: Some(e.line() + offset).filter(|l| *l > 0),
                    column: Some(e.column()).filter(|c| *c > 0),
                    message: json_message(&e),
                }
            })?;
        found.check(None)?;
        return Ok(found.parsed);
    }
    parse_yaml(text, &mut found)?;
    Ok(found.parsed)
}

/// What a document held so far: its ServiceEntries, and the first node that is not a
/// Kubernetes object, reported once the whole document has been read.
#[derive(Default)]
struct Found {
    parsed: Vec<Parsed>,
    failure: Option<String>,
}

impl Found {
    fn fail(&mut self, message: String) {
        self.failure.get_or_insert(message);
    }

    /// The failure of a document read to its end, named with the document's number when the
    /// text may hold several.
    fn check(&mut self, document: Option<usize>) -> Result<(), ParseError> {
        match self.failure.take() {
            None => Ok(()),
            Some(message) => Err(ParseError {
                line: None,
                column: None,
                message: match document {
                    Some(n) => format!("document {n}: {message}"),
                    None => message,
                },
            }),
        }
    }
}

fn json_message(e: &serde_json::Error) -> String {
    // serde_json appends " at line X column Y"; the location is given separately.
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}

#[cfg(feature = "yaml")]
fn parse_yaml(text: &str, found: &mut Found) -> Result<(), ParseError> {
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        Objects::top(i + 1, found)
            .deserialize(document)
            .map_err(|e| {
                let location = e.location();
                let message = e.to_string();
                // serde_norway appends " at line X column Y"; it is given separately.
                let message = match message.rfind(" at line ") {
                    Some(pos) => message[..pos].to_string(),
                    None => message,
                };
                ParseError {
                    line: location.as_ref().map(|l| l.line()),
                    column: location.as_ref().map(|l| l.column()),
                    message: format!("document {}: {message}", i + 1),
                }
            })?;
        found.check(Some(i + 1))?;
    }
    Ok(())
}

#[cfg(not(feature = "yaml"))]
fn parse_yaml(_text: &str, _found: &mut Found) -> Result<(), ParseError> {
    Err(ParseError {
        line: None,
        column: None,
        message: "expected JSON (this build reads no YAML)".to_string(),
    })
}

/// Reads one node of a document as the parser delivers it: nothing, a Kubernetes object, or a
/// list of them. An object's fields are kept as values, except `items`, whose entries are
/// decoded one by one and kept only until the object turns out to be a List or not (`kind`
/// may come after `items`, as in `kubectl get -o json`).
struct Objects<'a> {
    document: usize,
    depth: usize,
    found: &'a mut Found,
}

impl<'a> Objects<'a> {
    fn top(document: usize, found: &'a mut Found) -> Self {
        Objects {
            document,
            depth: 0,
            found,
        }
    }

    fn scalar<E: de::Error>(self, value: Value) -> Result<(), E> {
        self.found.fail(not_an_object(&value));
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Objects<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Objects<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object or a list of them")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Value::from(v))
    }

    // Beyond 64 bits a number has no `Value`; it is named from its digits.
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<(), E> {
        self.found.fail(misplaced("the number", v.to_string()));
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        self.found.fail(misplaced("the number", v.to_string()));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Value::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        let document = self.document;
        loop {
            let item = Objects {
                document,
                depth,
                found: &mut *self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fields = serde_json::Map::new();
        let mut items = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                let read = map.next_value_seed(ItemsSeed {
                    document: self.document,
                    depth: self.depth + 1,
                })?;
                // What an object that is not a List gets to see of its `items`: the value,
                // or for a list an empty one (a ServiceEntry refuses the field either way).
                match read {
                    Items::Other(value) => {
                        fields.insert(key, value);
                        items = None;
                    }
                    list @ Items::List { .. } => {
                        fields.insert(key, Value::Array(Vec::new()));
                        items = Some(list);
                    }
                }
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        if let (true, Some(Items::List { objects, failure })) = (is_list_kind(&fields), items) {
            if self.depth >= MAX_LIST_DEPTH {
                self.found.fail("lists nested too deeply".to_string());
            } else if let Some(failure) = failure {
                self.found.fail(failure);
            } else {
                self.found.parsed.extend(objects);
            }
            return Ok(());
        }
        if is_service_entry(&fields) {
            self.found.parsed.push(Parsed {
                document: self.document,
                entry: decode(Value::Object(fields)),
            });
        }
        Ok(())
    }
}

/// The value of an object's `items` field.
enum Items {
    /// A sequence: the ServiceEntries of its entries, and the first entry that is not an
    /// object (an error only if the object is a List).
    List {
        objects: Vec<Parsed>,
        failure: Option<String>,
    },
    Other(Value),
}

/// Reads an object's `items` into [`Items`].
struct ItemsSeed {
    document: usize,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Items;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Items, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Items;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
        let mut objects = Vec::new();
        let mut failure = None;
        let mut index = 0;
        while let Some(item) = seq.next_element::<Value>()? {
            if failure.is_none() {
                if let Err(e) = collect(item, self.document, self.depth, &mut objects) {
                    failure = Some(format!("items[{index}]: {e}"));
                }
            }
            index += 1;
        }
        Ok(Items::List { objects, failure })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Items, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Items::Other)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Items, E> {
        Ok(Items::Other(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Items, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Items, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Items, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Items, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Items, E> {
        Ok(Items::Other(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Items, E> {
        Ok(Items::Other(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Items, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The Kubernetes objects in a value that is an item of a List: [`Objects`] for a value
/// already read.
fn collect(
    value: Value,
    document: usize,
    depth: usize,
    out: &mut Vec<Parsed>,
) -> Result<(), String> {
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                collect(item, document, depth + 1, out)?;
            }
            Ok(())
        }
        Value::Object(mut map) => {
            if is_list_kind(&map) && map.get("items").is_some_and(Value::is_array) {
                if depth >= MAX_LIST_DEPTH {
                    return Err("lists nested too deeply".to_string());
                }
                if let Some(Value::Array(items)) = map.remove("items") {
                    for item in items {
                        collect(item, document, depth + 1, out)?;
                    }
                }
                return Ok(());
            }
            if is_service_entry(&map) {
                out.push(Parsed {
                    document,
                    entry: decode(Value::Object(map)),
                });
            }
            Ok(())
        }
        other => Err(not_an_object(&other)),
    }
}

/// Whether an object's `kind` names a list (`List`, `ServiceEntryList`, ...).
fn is_list_kind(fields: &serde_json::Map<String, Value>) -> bool {
    fields
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
}

/// Whether an object's `kind` and `apiVersion` make it a ServiceEntry of the group.
fn is_service_entry(fields: &serde_json::Map<String, Value>) -> bool {
    let field = |name| fields.get(name).and_then(Value::as_str).unwrap_or("");
    is_service_entry_type(field("apiVersion"), field("kind"))
}

/// What is said of a scalar found where an object or a list belongs.
fn not_an_object(value: &Value) -> String {
    let what = match value {
        Value::Bool(_) => "the boolean",
        Value::Number(_) => "the number",
        Value::String(_) => "the string",
        Value::Null | Value::Array(_) | Value::Object(_) => "the value",
    };
    misplaced(what, value.to_string())
}

/// `what` (shown as `shown`, cut short when long) found where an object or a list belongs.
fn misplaced(what: &str, mut shown: String) -> String {
    const SHOWN: usize = 40;
    if shown.chars().count() > SHOWN {
        shown = shown.chars().take(SHOWN).chain("...".chars()).collect();
    }
    format!("{what} {shown} where a Kubernetes object was expected")
}

/// Decodes one object of kind ServiceEntry in the `networking.istio.io` group.
pub fn decode(value: Value) -> Result<ServiceEntry, DecodeError> {
    let key = key_of(&value);
    let field = |name| value.get(name).and_then(Value::as_str).unwrap_or("");
    if let Err(e) = check_type(field("apiVersion"), field("kind")) {
        let path = match e {
            TypeError::ApiVersion(_) => "apiVersion",
            TypeError::Kind(_) => "kind",
        };
        return Err(DecodeError {
            key,
            path: path.to_string(),
            message: e.to_string(),
        });
    }
    serde_path_to_error::deserialize::<_, ServiceEntry>(value).map_err(|e| {
        let message = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            // A top-level field: name it rather than the document root.
            path = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or(".")
                .to_string();
        }
        DecodeError { key, path, message }
    })
}

/// [`decode`] straight from the JSON text of one object, without a `Value` in between: the
/// entry when the object decodes and has a version of the group, `None` otherwise. On `None`,
/// [`decode`] of the object's value says what is wrong and where; this is the fast path for
/// callers that receive objects as text and mostly valid ones (the admission webhook).
pub fn decode_json(text: &str) -> Option<ServiceEntry> {
    let entry: ServiceEntry = serde_json::from_str(text).ok()?;
    check_type(&entry.api_version, &entry.kind).ok()?;
    Some(entry)
}

/// `namespace/name` read leniently from an object that may not decode.
fn key_of(value: &Value) -> ObjectKey {
    let meta = value.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    ObjectKey::from_metadata(field("namespace"), field("name"), field("generateName"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SE: &str = "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: a\n  namespace: foo\nspec:\n  hosts: [a.b.global]\n";

    #[test]
    fn reads_multi_document_yaml_and_skips_other_kinds() {
        let text = format!(
            "{SE}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n---\n{SE}"
        );
        let parsed = parse_str(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].document, 3);
        assert_eq!(
            parsed[0].entry.as_ref().unwrap().spec.hosts,
            vec!["a.b.global"]
        );
    }

    #[test]
    fn reads_kubectl_list_in_json() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"x","namespace":"n"},"spec":{"hosts":["x.y.global"]}},
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}]}"#;
        let parsed = parse_str(text).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].entry.as_ref().unwrap().key(),
            ObjectKey::new("n", "x")
        );
    }

    #[test]
    fn reads_typed_list_in_yaml() {
        let text = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntryList\nitems:\n- {}\n",
            serde_json::to_string(&serde_norway::from_str::<Value>(SE).unwrap()).unwrap()
        );
        assert_eq!(parse_str(&text).unwrap().len(), 1);
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let err = parse_str("apiVersion: v1\nkind: [\n").unwrap_err();
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn json_syntax_error_names_the_line() {
        let err = parse_str("\n\n{\"kind\": }").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn unknown_spec_field_is_a_decode_error_with_its_path() {
        let text = format!("{SE}  hostz: [x]\n");
        let parsed = parse_str(&text).unwrap();
        let err = parsed[0].entry.as_ref().unwrap_err();
        assert_eq!(err.path, "spec.hostz");
        assert_eq!(err.key, ObjectKey::new("foo", "a"));
    }

    #[test]
    fn wrong_type_is_a_decode_error_with_its_path() {
        let text = format!("{SE}  ports:\n  - number: eighty\n");
        let parsed = parse_str(&text).unwrap();
        let err = parsed[0].entry.as_ref().unwrap_err();
        assert_eq!(err.path, "spec.ports[0].number");
        assert!(err.message.contains("eighty"), "{}", err.message);
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let text = format!("{SE}extra: 1\n");
        let parsed = parse_str(&text).unwrap();
        assert_eq!(parsed[0].entry.as_ref().unwrap_err().path, "extra");
    }

    #[test]
    fn unknown_version_is_a_decode_error() {
        let text = SE.replace("v1alpha3", "v2");
        let parsed = parse_str(&text).unwrap();
        assert_eq!(parsed[0].entry.as_ref().unwrap_err().path, "apiVersion");
    }

    #[test]
    fn another_group_is_not_a_service_entry_on_any_path() {
        let evil = r#"{"apiVersion":"evil.io/v1","kind":"ServiceEntry","metadata":{"name":"a"},"spec":{"hosts":["a.b.global"]}}"#;
        assert!(parse_str(evil).unwrap().is_empty());
        assert_eq!(decode_json(evil), None);
        let value: Value = serde_json::from_str(evil).unwrap();
        assert_eq!(decode(value).unwrap_err().path, "apiVersion");
        let gateway = evil
            .replace("evil.io/v1", "networking.istio.io/v1")
            .replace("ServiceEntry", "Gateway");
        assert_eq!(decode_json(&gateway), None);
        let value: Value = serde_json::from_str(&gateway).unwrap();
        assert_eq!(decode(value).unwrap_err().path, "kind");
    }

    /// What `parse_str` must agree with: the whole document read as one value first.
    fn read_whole(text: &str) -> Result<Vec<Parsed>, String> {
        let mut out = Vec::new();
        let value: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        collect(value, 1, 0, &mut out)?;
        Ok(out)
    }

    fn se_json(name: &str) -> String {
        format!(
            r#"{{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{{"name":"{name}"}},"spec":{{"hosts":["{name}.bar.global"]}}}}"#
        )
    }

    #[test]
    fn list_items_before_kind_as_kubectl_prints_them() {
        let text = format!(
            r#"{{"apiVersion":"v1","items":[{},{}],"kind":"List","metadata":{{"resourceVersion":""}}}}"#,
            se_json("a"),
            se_json("b")
        );
        let parsed = parse_str(&text).unwrap();
        let names: Vec<_> = parsed
            .iter()
            .map(|p| p.entry.as_ref().unwrap().key().name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(parsed, read_whole(&text).unwrap());
    }

    #[test]
    fn streaming_agrees_with_reading_the_whole_document() {
        let a = se_json("a");
        let texts = [
            format!(r#"{{"kind":"List","items":[{a},null,[{a}]]}}"#),
            format!(r#"{{"items":[{a}],"kind":"ConfigMap"}}"#),
            r#"{"items":{"x":1},"kind":"List"}"#.to_string(),
            format!(r#"{{"kind":"List","items":[{{"kind":"ServiceEntryList","items":[{a}]}}]}}"#),
            format!(
                r#"{{"items":[{a}],"kind":"ServiceEntry","apiVersion":"networking.istio.io/v1","metadata":{{"name":"x"}}}}"#
            ),
            r#"{"items":"text","kind":"ServiceEntry","apiVersion":"networking.istio.io/v1","metadata":{"name":"x"}}"#.to_string(),
            format!("kind: List\nitems:\n- {a}\n- null\n"),
            format!("items:\n- {a}\nkind: List\n"),
        ];
        for text in &texts {
            let streamed = parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(streamed, read_whole(text).unwrap(), "{text}");
        }
    }

    /// Objects as they come in real files and in odd ones: ServiceEntries (some invalid),
    /// other kinds, nulls and scalars, and lists of them, with `items` before or after `kind`.
    fn object() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[a-c]{1,2}".prop_map(|name| serde_json::from_str(&se_json(&name)).unwrap()),
            Just(
                serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "bad"}, "spec": {"hosts": 1}})
            ),
            Just(
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
            ),
            Just(Value::Null),
            Just(Value::from("text")),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            (
                prop::collection::vec(inner, 0..4),
                prop_oneof![Just("List"), Just("ServiceEntryList"), Just("ConfigMap")],
                any::<bool>(),
            )
                .prop_map(|(items, kind, items_first)| {
                    let mut map = serde_json::Map::new();
                    if items_first {
                        map.insert("items".into(), Value::Array(items));
                        map.insert("kind".into(), Value::from(kind));
                    } else {
                        map.insert("kind".into(), Value::from(kind));
                        map.insert("items".into(), Value::Array(items));
                    }
                    Value::Object(map)
                })
        })
    }

    proptest! {
        #[test]
        fn one_pass_reads_what_the_whole_tree_holds(value in object()) {
            let json = value.to_string();
            let whole = read_whole(&json);
            for text in [json.clone(), serde_norway::to_string(&value).unwrap()] {
                match (&whole, parse_str(&text)) {
                    (Ok(expected), Ok(streamed)) => prop_assert_eq!(expected, &streamed),
                    (Err(_), Err(_)) => {}
                    (expected, streamed) => prop_assert!(false, "{text}: {expected:?} but {streamed:?}"),
                }
            }
        }
    }

    /// ServiceEntry objects that decode, and ones that fail in a field, a version or a kind.
    fn service_entry_object() -> impl Strategy<Value = Value> {
        let version = prop_oneof![
            Just("networking.istio.io/v1"),
            Just("networking.istio.io/v1alpha3"),
            Just("networking.istio.io/v2"),
            Just("v1"),
        ];
        let hosts = prop_oneof![
            Just(serde_json::json!(["a.b.global"])),
            Just(serde_json::json!("a.b.global")),
            Just(Value::Null),
        ];
        let port = prop_oneof![
            Just(serde_json::json!(8000)),
            Just(serde_json::json!("8000")),
            Just(serde_json::json!(-1)),
            Just(serde_json::json!(1.5)),
        ];
        let extra = prop_oneof![Just(None), Just(Some("hostz")), Just(Some("status"))];
        (version, hosts, port, extra, any::<bool>()).prop_map(
            |(version, hosts, port, extra, namespaced)| {
                let mut object = serde_json::json!({
                    "apiVersion": version,
                    "kind": "ServiceEntry",
                    "metadata": {"name": "x"},
                    "spec": {"hosts": hosts, "ports": [{"number": port, "name": "http"}]},
                });
                if namespaced {
                    object["metadata"]["namespace"] = Value::from("foo");
                }
                if let Some(field) = extra {
                    object["spec"][field] = Value::from(1);
                }
                object
            },
        )
    }

    proptest! {
        #[test]
        fn decoding_text_agrees_with_decoding_its_value(object in service_entry_object()) {
            let text = object.to_string();
            prop_assert_eq!(decode_json(&text), decode(object).ok(), "{}", text);
        }
    }

    #[test]
    fn service_entry_with_items_is_refused_for_that_field() {
        let text = format!(
            r#"{{"items":[{}],"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{{"name":"x"}}}}"#,
            se_json("a")
        );
        let parsed = parse_str(&text).unwrap();
        assert_eq!(
            parsed.len(),
            1,
            "the items of a non-List are not read as objects"
        );
        assert_eq!(parsed[0].entry.as_ref().unwrap_err().path, "items");
    }

    #[test]
    fn scalar_list_item_is_a_parse_error_naming_the_item() {
        let text = format!(r#"{{"items":[{}, "oops"],"kind":"List"}}"#, se_json("a"));
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("items[1]"), "{err}");
        assert!(err.message.contains(r#"the string "oops""#), "{err}");
        // The same items under a kind that is no List are not objects of the document.
        let text = text.replace("\"List\"", "\"ConfigMap\"");
        assert!(parse_str(&text).unwrap().is_empty());
    }

    #[test]
    fn lists_nested_too_deeply_are_refused() {
        let mut text = se_json("a");
        for _ in 0..MAX_LIST_DEPTH {
            text = format!(r#"{{"kind":"List","items":[{text}]}}"#);
        }
        assert_eq!(
            parse_str(&text).unwrap().len(),
            1,
            "{MAX_LIST_DEPTH} levels are read"
        );
        let text = format!(r#"{{"kind":"List","items":[{text}]}}"#);
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
        let yaml = serde_norway::to_string(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
        let err = parse_str(&yaml).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
    }

    #[test]
    fn a_syntax_error_is_reported_before_a_scalar_in_the_wrong_place() {
        let err = parse_str(r#"{"kind":"List","items":[1]} x"#).unwrap_err();
        assert!(err.message.contains("trailing characters"), "{err}");
        assert_eq!(err.column, Some(29), "{err}");
        let err = parse_str("[1, {").unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
        let err = parse_str("kind: List\nitems: [1]\nx: [\n").unwrap_err();
        assert!(
            err.line.is_some(),
            "a YAML syntax error has its line: {err}"
        );
    }

    #[test]
    fn a_number_beyond_64_bits_is_named_as_a_number() {
        let err = parse_str("99999999999999999999\n").unwrap_err();
        assert!(
            err.message.contains("the number 99999999999999999999"),
            "{err}"
        );
    }

    #[test]
    fn scalar_document_names_what_it_found() {
        let err = parse_str("---\nkind: List\n---\n42\n").unwrap_err();
        assert!(err.message.starts_with("document 2: "), "{err}");
        assert!(err.message.contains("42"), "{err}");
    }

    #[test]
    fn scalar_document_is_a_parse_error() {
        assert!(parse_str("hello").is_err());
        assert!(parse_str("").unwrap().is_empty());
        assert!(parse_str("# only a comment\n").unwrap().is_empty());
    }
}
