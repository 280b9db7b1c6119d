//! Reading ServiceEntries out of text as people keep them: one YAML document, several, a JSON
//! stream, or a `kind: List` as `kubectl get -o yaml|json` prints it. The text is read as
//! `kubectl -f` and the API server read it ([`crate::yaml`]): the same documents, the same
//! values (`yes` is `true`, `[2001:db8::, 10.0.0.1]` two strings), the same refusals. Objects
//! of other kinds are skipped.
//!
//! Two kinds of failure are kept apart: text that kubectl would refuse or that holds no
//! Kubernetes objects ([`ParseError`], with the line and column), and a ServiceEntry that does
//! not fit the schema ([`DecodeError`], with the field path), which is reported like any other
//! rule so the other entries of the file are still checked.
//!
//! Entries are decoded straight from the reader's nodes into the model; a `serde_json::Value`
//! is built only for an entry that fails, to name the field ([`decode`]).

use serde_json::Value;

use crate::finding::{Finding, Rule};
#[cfg(feature = "yaml")]
use crate::model::is_service_entry_type;
use crate::model::{check_type, ObjectKey, ServiceEntry, TypeError};
#[cfg(feature = "yaml")]
use crate::yaml;

/// Nesting of `kind: List` inside `kind: List` that is still followed.
#[cfg(feature = "yaml")]
const MAX_LIST_DEPTH: usize = 8;

/// Text that could not be read as YAML or JSON, or a document that is not a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(*line, *column))]
pub struct ParseError {
    /// 1-based line, where the reader gives one.
    pub line: Option<usize>,
    /// 1-based column, in characters.
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
    /// 1-based number of the document that held the object, in the order kubectl splits the
    /// text: YAML at `---` lines (a `---` right after another starts no empty document; one of
    /// only comments counts), a JSON stream value by value.
    pub document: usize,
    pub entry: Result<ServiceEntry, DecodeError>,
}

/// Every ServiceEntry in `text`, in order.
///
/// The documents are those `kubectl -f` reads: a text whose first character other than
/// whitespace is `{` is a stream of JSON values (falling back to YAML as kubectl does), any
/// other text YAML documents split at `---` lines. Documents that are empty or null are
/// skipped; one that kubectl refuses ends the reading with its line and column.
///
/// Each document is read in one pass: the items of a `kind: List` are decoded one at a time
/// as the reader reaches them, so a large list is never held as one tree. Within a document,
/// a syntax error is reported first, then a value kubectl cannot convert (`.inf`, a null key),
/// then an item or document that is not an object.
#[cfg(feature = "yaml")]
pub fn parse_str(text: &str) -> Result<Vec<Parsed>, ParseError> {
    let mut parsed = Vec::new();
    for (i, document) in yaml::documents(text).enumerate() {
        read_document(i + 1, document, &mut parsed)?;
    }
    Ok(parsed)
}

#[cfg(feature = "yaml")]
fn read_document(
    number: usize,
    document: Result<yaml::Document<'_>, yaml::Error>,
    out: &mut Vec<Parsed>,
) -> Result<(), ParseError> {
    let located = |e: yaml::Error| ParseError {
        line: e.line,
        column: e.column,
        message: format!("document {number}: {}", e.message),
    };
    let mut items = Items {
        document: number,
        parsed: Vec::new(),
        count: 0,
        failure: None,
        conversion: None,
    };
    let Some(node) = document
        .and_then(|d| d.read(|item| items.push(&item)))
        .map_err(located)?
    else {
        return Ok(());
    };
    if let Some(e) = items.conversion {
        return Err(located(e));
    }
    let is_list = node.is_mapping() && is_list_kind(node.str_field("kind"));
    if !is_list {
        // Items of an object that is not a List are not objects of the document.
        return read_node(&node, number, 0, out).map_err(|failure| match failure {
            Failure::Conversion(e) => located(e),
            Failure::Shape(message) => located(at(&node, message)),
        });
    }
    node.validate().map_err(located)?;
    if let Some(e) = items.failure {
        return Err(located(e));
    }
    out.append(&mut items.parsed);
    Ok(())
}

/// What the elements of a document's top-level `items` held, kept until the document turns
/// out to be a List or not (`kind` may come after `items`, as in `kubectl get -o json`): the
/// ServiceEntries decoded from them, never the elements themselves.
#[cfg(feature = "yaml")]
struct Items {
    document: usize,
    parsed: Vec<Parsed>,
    count: usize,
    /// The first element that is not an object (an error only if the document is a List).
    failure: Option<yaml::Error>,
    /// The first value kubectl cannot convert (an error whatever the document is).
    conversion: Option<yaml::Error>,
}

#[cfg(feature = "yaml")]
impl Items {
    fn push(&mut self, item: &yaml::Node<'_>) {
        let index = self.count;
        self.count += 1;
        if self.conversion.is_some() {
            return;
        }
        if self.failure.is_some() {
            // What is read now is dropped; only a conversion error would still count.
            if let Err(e) = item.validate() {
                self.conversion = Some(e);
            }
            return;
        }
        match read_node(item, self.document, 1, &mut self.parsed) {
            Ok(()) => {}
            Err(Failure::Conversion(e)) => self.conversion = Some(e),
            Err(Failure::Shape(message)) => {
                self.failure = Some(at(item, format!("items[{index}]: {message}")));
            }
        }
    }
}

/// Why a node gave no objects.
#[cfg(feature = "yaml")]
enum Failure {
    /// A value kubectl cannot convert to JSON.
    Conversion(yaml::Error),
    /// Something that is not a Kubernetes object where one belongs.
    Shape(String),
}

#[cfg(feature = "yaml")]
impl From<yaml::Error> for Failure {
    fn from(e: yaml::Error) -> Self {
        Failure::Conversion(e)
    }
}

/// An error at the start of `node`.
#[cfg(feature = "yaml")]
fn at(node: &yaml::Node<'_>, message: String) -> yaml::Error {
    yaml::Error {
        line: Some(node.line()),
        column: Some(node.column()),
        message,
    }
}

/// The ServiceEntries of one node at `depth` lists down: nothing for null, the entry of a
/// ServiceEntry decoded straight into the model, nothing for an object of another kind. The
/// rare rest (sequences, nested Lists, scalars) goes through its value ([`collect`]).
#[cfg(feature = "yaml")]
fn read_node(
    node: &yaml::Node<'_>,
    document: usize,
    depth: usize,
    out: &mut Vec<Parsed>,
) -> Result<(), Failure> {
    if node.is_null() {
        return Ok(());
    }
    if node.is_mapping() {
        let kind = node.str_field("kind");
        if !is_list_kind(kind) {
            let api_version = node.str_field("apiVersion").unwrap_or("");
            if is_service_entry_type(api_version, kind.unwrap_or("")) {
                let entry = decode_node(node)?;
                out.push(Parsed { document, entry });
            } else {
                node.validate()?;
            }
            return Ok(());
        }
    }
    collect(node.to_value()?, document, depth, out).map_err(Failure::Shape)
}

/// [`decode`] of a node: straight into the model, and through its value only when that fails,
/// to say where. Fails only where kubectl could not convert the node at all.
#[cfg(feature = "yaml")]
fn decode_node(node: &yaml::Node<'_>) -> Result<Result<ServiceEntry, DecodeError>, yaml::Error> {
    if let Ok(entry) = node.deserialize::<ServiceEntry>() {
        if check_type(&entry.api_version, &entry.kind).is_ok() {
            return Ok(Ok(entry));
        }
    }
    Ok(decode(node.to_value()?))
}

/// The Kubernetes objects in a value that is a document or an item of a List.
#[cfg(feature = "yaml")]
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
            let field = |name| map.get(name).and_then(Value::as_str);
            if is_list_kind(field("kind")) && map.get("items").is_some_and(Value::is_array) {
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
            if is_service_entry_type(
                field("apiVersion").unwrap_or(""),
                field("kind").unwrap_or(""),
            ) {
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
#[cfg(feature = "yaml")]
fn is_list_kind(kind: Option<&str>) -> bool {
    kind.is_some_and(|kind| kind.ends_with("List"))
}

/// What is said of a scalar found where an object or a list belongs.
#[cfg(feature = "yaml")]
fn not_an_object(value: &Value) -> String {
    let what = match value {
        Value::Bool(_) => "the boolean",
        Value::Number(_) => "the number",
        Value::String(_) => "the string",
        Value::Null | Value::Array(_) | Value::Object(_) => "the value",
    };
    let mut shown = value.to_string();
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
#[cfg(feature = "yaml")]
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
            serde_json::to_string(&whole_values(SE).unwrap()[0]).unwrap()
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
        let err = parse_str("\n\n{\"kind\": ]").unwrap_err();
        assert_eq!((err.line, err.column), (Some(3), Some(10)), "{err}");
        assert!(err.message.starts_with("document 1: json: "), "{err}");
        // Not JSON but YAML (a flow mapping whose `kind` is null), as kubectl falls back to
        // reading it: no object of any kind.
        assert_eq!(parse_str("\n\n{\"kind\": }").unwrap(), []);
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

    /// The documents of `text` as whole values, the streamed items of a List put back.
    fn whole_values(text: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        for document in yaml::documents(text) {
            let mut items = Vec::new();
            let node = document
                .and_then(|d| d.read(|item| items.push(item.to_value())))
                .map_err(|e| e.located())?;
            let items: Vec<Value> = items
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(|e| e.located())?;
            let Some(node) = node else { continue };
            let mut value = node.to_value().map_err(|e| e.located())?;
            if let (Some(object), false) = (value.as_object_mut(), items.is_empty()) {
                object.insert("items".to_string(), Value::Array(items));
            }
            out.push(value);
        }
        Ok(out)
    }

    /// What `parse_str` must agree with: each document read as one value first.
    fn read_whole(text: &str) -> Result<Vec<Parsed>, String> {
        let mut out = Vec::new();
        for value in whole_values(text)? {
            collect(value, 1, 0, &mut out)?;
        }
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
        let err = parse_str(r#"{"kind":"List","items":[1] x}"#).unwrap_err();
        assert!(err.message.contains("invalid character 'x'"), "{err}");
        assert_eq!((err.line, err.column), (Some(1), Some(28)), "{err}");
        let err = parse_str("[1, {").unwrap_err();
        assert!(
            err.message.contains("did not find expected node content"),
            "{err}"
        );
        let err = parse_str("kind: List\nitems: [1]\nx: [\n").unwrap_err();
        assert!(err.message.contains("expected node content"), "{err}");
        assert_eq!(err.line, Some(4), "{err}");
    }

    #[test]
    fn documents_are_reported_in_order() {
        // A JSON stream's first value holds a scalar item; what follows it is no JSON. kubectl
        // reads the first document before it meets the second.
        let err = parse_str(r#"{"kind":"List","items":[1]} x"#).unwrap_err();
        assert!(err.message.starts_with("document 1: items[0]: "), "{err}");
        assert_eq!((err.line, err.column), (Some(1), Some(25)), "{err}");
        let err = parse_str(&format!("{SE}---\nkind: [\n")).unwrap_err();
        assert!(err.message.starts_with("document 2: "), "{err}");
    }

    #[test]
    fn a_number_beyond_64_bits_is_named_as_a_number() {
        // go-yaml reads a plain integer beyond 64 bits as a float, as the API server sees it.
        let err = parse_str("99999999999999999999\n").unwrap_err();
        assert!(err.message.contains("the number 1e+20 where"), "{err}");
        let err = parse_str(r#"{"kind":"List","items":[99999999999999999999]}"#).unwrap_err();
        assert!(err.message.contains("the number 1e+20 where"), "{err}");
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
