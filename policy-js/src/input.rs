//! The options object as JavaScript passes it, turned into the policy's [`Options`].

use policy::Options;
use serde::Deserialize;

/// `{domainSuffix?, gatewayPorts?, vipRanges?, existing?}`; absent or empty settings take the
/// defaults of `admission-webhook check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OptionsInput {
    pub domain_suffix: Option<String>,
    pub gateway_ports: Vec<u16>,
    pub vip_ranges: Vec<String>,
    /// Text of the ServiceEntries already in the cluster, as `--existing`: their addresses are
    /// taken, and an entry with the same `namespace/name` is an update of one of them.
    pub existing: Option<String>,
}

impl OptionsInput {
    /// Reads options from JSON text (what the bindings receive); `null` means the defaults.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Option<OptionsInput> =
            serde_json::from_str(text).map_err(|e| format!("invalid options: {e}"))?;
        Ok(value.unwrap_or_default())
    }

    /// The checked options, or the reason they are rejected (naming the bad value).
    pub fn to_options(&self) -> Result<Options, String> {
        Options::new(
            self.domain_suffix.as_deref(),
            &self.gateway_ports,
            &self.vip_ranges,
        )
        .map_err(|e| format!("invalid options: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_empty_objects_are_the_defaults() {
        assert_eq!(
            OptionsInput::from_json("null").unwrap().to_options(),
            Ok(Options::default())
        );
        assert_eq!(
            OptionsInput::from_json("{}").unwrap().to_options(),
            Ok(Options::default())
        );
    }

    #[test]
    fn camel_case_settings_are_read() {
        let input = OptionsInput::from_json(
            r#"{"domainSuffix":"global.example","gatewayPorts":[15443,31443],"vipRanges":["10.9.0.0/16"],"existing":"x: 1"}"#,
        )
        .unwrap();
        assert_eq!(input.existing.as_deref(), Some("x: 1"));
        let options = input.to_options().unwrap();
        assert_eq!(options.domain_suffix, "global.example");
        assert_eq!(options.gateway_ports, vec![15443, 31443]);
        assert_eq!(options.vip_ranges[0].to_string(), "10.9.0.0/16");
    }

    #[test]
    fn unknown_option_is_named() {
        let err = OptionsInput::from_json(r#"{"domainSufix":"global"}"#).unwrap_err();
        assert!(err.contains("unknown field `domainSufix`"), "{err}");
    }

    #[test]
    fn port_out_of_range_is_rejected() {
        let err = OptionsInput::from_json(r#"{"gatewayPorts":[70000]}"#).unwrap_err();
        assert!(err.contains("70000"), "{err}");
    }

    #[test]
    fn bad_vip_range_is_named() {
        let err = OptionsInput::from_json(r#"{"vipRanges":["10.0.0.0/33"]}"#)
            .unwrap()
            .to_options()
            .unwrap_err();
        assert!(err.contains("\"10.0.0.0/33\""), "{err}");
    }
}
