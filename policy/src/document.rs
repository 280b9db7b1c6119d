//! Reading ServiceEntries out of text as people keep them: one YAML document, several, JSON, or a
//! `kind: List` as `kubectl get -o yaml|json` prints it. Objects of other kinds are skipped.
//!
//! Two kinds of failure are kept apart: text that is not YAML or JSON at all ([`ParseError`]),
//! and a ServiceEntry that does not fit the schema ([`DecodeError`], with the field path), which
//! is reported like any other rule so the other entries of the file are still checked.

use serde_json::Value;

use crate::finding::{Finding, Rule};
use crate::model::{ObjectKey, ServiceEntry, DEFAULT_NAMESPACE, GROUP, KIND, VERSIONS};

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
pub fn parse_str(text: &str) -> Result<Vec<Parsed>, ParseError> {
    let mut out = Vec::new();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(trimmed).map_err(|e| {
            // Line numbers count from the trimmed text; add back the leading lines.
            let skipped = text.len() - trimmed.len();
            let offset = text[..skipped].matches('\n').count();
            ParseError {
                line: Some(e.line() + offset).filter(|l| *l > 0),
                column: Some(e.column()).filter(|c| *c > 0),
                message: json_message(&e),
            }
        })?;
        collect(value, 1, 0, &mut out)?;
        return Ok(out);
    }
    parse_yaml(text, &mut out)?;
    Ok(out)
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
fn parse_yaml(text: &str, out: &mut Vec<Parsed>) -> Result<(), ParseError> {
    use serde::Deserialize;
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| {
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
        collect(value, i + 1, 0, out)?;
    }
    Ok(())
}

#[cfg(not(feature = "yaml"))]
fn parse_yaml(_text: &str, _out: &mut Vec<Parsed>) -> Result<(), ParseError> {
    Err(ParseError {
        line: None,
        column: None,
        message: "expected JSON (this build reads no YAML)".to_string(),
    })
}

fn collect(
    value: Value,
    document: usize,
    depth: usize,
    out: &mut Vec<Parsed>,
) -> Result<(), ParseError> {
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                collect(item, document, depth + 1, out)?;
            }
            Ok(())
        }
        Value::Object(mut map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
            let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
                if depth >= MAX_LIST_DEPTH {
                    return Err(not_an_object(document, "lists nested too deeply"));
                }
                // Moved out, not copied: each item is freed once decoded, and a large list is
                // never held twice.
                if let Some(Value::Array(items)) = map.remove("items") {
                    for item in items {
                        collect(item, document, depth + 1, out)?;
                    }
                }
                return Ok(());
            }
            let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
            if kind == KIND && group == GROUP {
                out.push(Parsed {
                    document,
                    entry: decode(Value::Object(map)),
                });
            }
            Ok(())
        }
        other => Err(not_an_object(
            document,
            &format!("is {}, not a Kubernetes object", type_name(&other)),
        )),
    }
}

fn not_an_object(document: usize, what: &str) -> ParseError {
    ParseError {
        line: None,
        column: None,
        message: format!("document {document} {what}"),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Decodes one object of kind ServiceEntry in the `networking.istio.io` group.
pub fn decode(value: Value) -> Result<ServiceEntry, DecodeError> {
    let key = key_of(&value);
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = api_version.split_once('/').map(|(_, v)| v).unwrap_or("");
    if !VERSIONS.contains(&version) {
        return Err(DecodeError {
            key,
            path: "apiVersion".to_string(),
            message: format!(
                "unsupported apiVersion {api_version:?}; expected {GROUP}/v1, v1beta1 or v1alpha3"
            ),
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

/// `namespace/name` read leniently from an object that may not decode.
fn key_of(value: &Value) -> ObjectKey {
    let meta = value.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = field("name")
        .map(str::to_string)
        .or_else(|| field("generateName").map(|p| format!("{p}*")))
        .unwrap_or_default();
    ObjectKey::new(field("namespace").unwrap_or(DEFAULT_NAMESPACE), name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn scalar_document_is_a_parse_error() {
        assert!(parse_str("hello").is_err());
        assert!(parse_str("").unwrap().is_empty());
        assert!(parse_str("# only a comment\n").unwrap().is_empty());
    }
}
