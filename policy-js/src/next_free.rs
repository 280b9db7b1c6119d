//! `nextFreeAddress`: the lowest address of a VIP range that no ServiceEntry in a text holds.

use policy::options::DEFAULT_VIP_RANGES;
use policy::{parse_str, AddressIndex, ServiceEntry};
use serde::Serialize;

/// `{address, range, error}`: `address` is `None` when the range is full or on an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextFree {
    pub address: Option<String>,
    /// The range searched, normalised (`127.255.0.0/16`); `None` when it could not be read.
    pub range: Option<String>,
    pub error: Option<String>,
}

impl NextFree {
    fn error(range: Option<String>, message: String) -> Self {
        NextFree {
            address: None,
            range,
            error: Some(message),
        }
    }
}

/// The lowest free address of `range` (default: the first VIP range, `127.255.0.0/16`), given
/// the addresses of the ServiceEntries in `text`. Entries that fail to decode hold nothing.
pub fn next_free_address(text: &str, range: Option<&str>) -> NextFree {
    let written = range.unwrap_or(DEFAULT_VIP_RANGES[0]);
    let Ok(net) = written.trim().parse::<ipnet::IpNet>() else {
        return NextFree::error(
            None,
            format!("range {written:?} is not a CIDR such as 127.255.0.0/16"),
        );
    };
    let net = net.trunc();
    let parsed = match parse_str(text) {
        Ok(parsed) => parsed,
        Err(e) => return NextFree::error(Some(net.to_string()), e.to_string()),
    };
    let entries: Vec<&ServiceEntry> = parsed
        .iter()
        .filter_map(|p| p.entry.as_ref().ok())
        .collect();
    let index = AddressIndex::build(entries);
    match index.next_free(net, &[]) {
        Some(address) => NextFree {
            address: Some(address.to_string()),
            range: Some(net.to_string()),
            error: None,
        },
        None => NextFree::error(
            Some(net.to_string()),
            format!("no free address is left in {net}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/data/seed/serviceentry-direct.yaml");

    #[test]
    fn skips_the_seed_vip() {
        let found = next_free_address(SEED, Some("127.255.0.2/31"));
        assert_eq!(found.address.as_deref(), Some("127.255.0.3"), "{found:?}");
        assert_eq!(found.range.as_deref(), Some("127.255.0.2/31"));
    }

    #[test]
    fn defaults_to_the_first_vip_range() {
        let found = next_free_address(SEED, None);
        assert_eq!(found.address.as_deref(), Some("127.255.0.1"));
        assert_eq!(found.range.as_deref(), Some("127.255.0.0/16"));
    }

    #[test]
    fn empty_text_leaves_the_range_free() {
        let found = next_free_address("", Some("240.0.0.0/16"));
        assert_eq!(found.address.as_deref(), Some("240.0.0.1"));
    }

    #[test]
    fn full_range_says_so() {
        let found = next_free_address(SEED, Some("127.255.0.2/32"));
        assert_eq!(found.address, None);
        assert_eq!(
            found.error.as_deref(),
            Some("no free address is left in 127.255.0.2/32")
        );
    }

    #[test]
    fn bad_range_is_an_error_value() {
        let found = next_free_address(SEED, Some("10.0.0.0/33"));
        assert_eq!(found.address, None);
        assert!(found.error.unwrap().contains("\"10.0.0.0/33\""));
    }

    #[test]
    fn malformed_text_is_an_error_naming_the_line() {
        let found = next_free_address("a: [\n", None);
        assert!(found.error.unwrap().starts_with("line "));
    }
}
