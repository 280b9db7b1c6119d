//! The JavaScript functions: each converts its arguments, calls the plain function and
//! returns a plain object. None throws: input that cannot be used becomes a violation or an
//! `error` field.

use js_sys::JSON;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::input::OptionsInput;
use crate::next_free::{next_free_address, NextFree};
use crate::report::{self, Report, RULE_INPUT, RULE_OPTIONS};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Settings of the rules; absent or empty settings take the defaults of `admission-webhook check`. */
export interface ValidateOptions {
  /** Domain suffix of remote services; default "global". */
  domainSuffix?: string;
  /** Ports `.global` endpoints may point at; default [15443]. */
  gatewayPorts?: number[];
  /** Ranges `.global` VIPs are expected in; default 127.255.0.0/16, 240.0.0.0/16, 240.240.0.0/16. */
  vipRanges?: string[];
  /** YAML or JSON of the ServiceEntries already in the cluster, as `--existing`: their
   *  addresses are taken, and an entry with the same namespace/name is an update of one. */
  existing?: string;
}

export interface Violation {
  /** Empty for a violation about the whole text or the options. */
  namespace: string;
  name: string;
  /** 1-based YAML document of the object; null for the whole text. */
  document: number | null;
  /** Line and column of a parse error, where the parser gives them. */
  line: number | null;
  column: number | null;
  /** Field path such as "spec.endpoints[0].ports.http1"; empty for the whole text;
   *  "options.existing" for a parse error in the existing entries. */
  path: string;
  message: string;
  severity: "error" | "warning";
  /** A policy rule ("api-server", "istio", "global-host", "global-address", "gateway-port",
   *  "global-mode", "duplicate-address", "decode", "omitted"), or "parse", "options" or
   *  "input". */
  rule: string;
  /** For a duplicate address: the free address the message suggests. */
  suggestedAddress: string | null;
  /** Who refuses the object for this finding in a cluster: "api-server" (the CRD), "istio"
   *  (Istio's webhook) or "globalmesh"; empty for the whole text or the options. */
  enforcedBy: string;
}

export interface Report {
  /** True when there are no errors (warnings allowed). */
  valid: boolean;
  /** ServiceEntries found in the text. */
  checked: number;
  violations: Violation[];
  warnings: Violation[];
}

export interface NextFree {
  /** null when the range is full or on an error. */
  address: string | null;
  range: string | null;
  error: string | null;
}
"#;

/// Checks every ServiceEntry in `text` (YAML, JSON, several documents or a `kind: List`) with
/// the rules of `admission-webhook check`, duplicates among the entries included.
#[wasm_bindgen(js_name = validate, unchecked_return_type = "Report")]
pub fn validate_js(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "ValidateOptions | null")] options: Option<
        JsValue,
    >,
) -> JsValue {
    let options = options.unwrap_or(JsValue::UNDEFINED);
    let report = match (text.as_string(), read_options(&options)) {
        (None, _) => Report::rejected(RULE_INPUT, not_text(&text)),
        (_, Err(message)) => Report::rejected(RULE_OPTIONS, message),
        (Some(text), Ok(options)) => report::validate(&text, &options),
    };
    to_js(&report)
}

/// The lowest address of `range` (default 127.255.0.0/16) that no ServiceEntry in `text` holds.
#[wasm_bindgen(js_name = nextFreeAddress, unchecked_return_type = "NextFree")]
pub fn next_free_address_js(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "string | null")] range: Option<JsValue>,
) -> JsValue {
    let range = range.filter(|r| !r.is_undefined() && !r.is_null());
    let error = |message: String| NextFree {
        address: None,
        range: None,
        error: Some(message),
    };
    let found = match (text.as_string(), range.as_ref().map(JsValue::as_string)) {
        (None, _) => error(not_text(&text)),
        (_, Some(None)) => {
            error("expected the range as a CIDR string such as 127.255.0.0/16".into())
        }
        (Some(text), range) => next_free_address(&text, range.flatten().as_deref()),
    };
    to_js(&found)
}

fn not_text(value: &JsValue) -> String {
    let kind = value.js_typeof().as_string().unwrap_or_default();
    format!("expected the text of ServiceEntries as a string, got {kind}")
}

fn read_options(options: &JsValue) -> Result<OptionsInput, String> {
    if options.is_undefined() || options.is_null() {
        return Ok(OptionsInput::default());
    }
    if !options.is_object() || js_sys::Array::is_array(options) {
        return Err(
            "invalid options: expected an object such as {domainSuffix: \"global\"}".into(),
        );
    }
    let json = JSON::stringify(options)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| "invalid options: not representable as JSON".to_string())?;
    OptionsInput::from_json(&json)
}

fn to_js(value: &impl Serialize) -> JsValue {
    // Plain data of strings, numbers, booleans and null: serialising cannot fail and the JSON
    // is always parseable, but neither failure may throw.
    serde_json::to_string(value)
        .ok()
        .and_then(|text| JSON::parse(&text).ok())
        .unwrap_or(JsValue::NULL)
}
