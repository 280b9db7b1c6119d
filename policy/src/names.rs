//! Name syntax shared by the rules, as each enforcer defines it: Kubernetes' DNS-1123 labels,
//! subdomains and qualified names (the API server), and Istio's own, more lenient host and
//! label forms (its webhook: `pkg/config/labels`, `agent.ValidateWildcardDomain`).

use std::fmt;

/// Longest DNS label.
const MAX_LABEL: usize = 63;
/// Longest host or FQDN Istio accepts (bytes; Istio allows 255 where DNS allows 253).
pub const MAX_DOMAIN: usize = 255;
/// Longest Kubernetes DNS subdomain (object names, label-key prefixes).
const MAX_SUBDOMAIN: usize = 253;

/// A DNS-1123 label as Kubernetes defines it: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(value: &str) -> bool {
    is_label_with(value, |c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Istio's DNS-1123 label (`labels.IsDNS1123Label`): as Kubernetes', but in either case. Port
/// names, host labels and exportTo namespaces are checked with it.
pub fn is_istio_label(value: &str) -> bool {
    is_label_with(value, |c| c.is_ascii_alphanumeric())
}

fn is_label_with(value: &str, alnum: impl Fn(u8) -> bool) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_LABEL
                && alnum(*first)
                && alnum(*last)
                && bytes.iter().all(|b| alnum(*b) || *b == b'-')
        }
        _ => false,
    }
}

/// Istio's wildcard label (`labels.IsWildcardDNS1123Label`): `*`, or a label optionally
/// preceded by `*` or `*-`, 63 characters at most counting the `*`.
pub fn is_wildcard_label(value: &str) -> bool {
    if value == "*" {
        return true;
    }
    if value.len() > MAX_LABEL {
        return false;
    }
    let rest = value
        .strip_prefix("*-")
        .or_else(|| value.strip_prefix('*'))
        .unwrap_or(value);
    is_istio_label(rest)
}

/// Why a host is not acceptable to Istio (`agent.ValidateWildcardDomain`): at most 255 bytes,
/// a wildcard label first, then DNS-1123 labels whose last is not a number. A single label
/// (`foo`, even `1234`) passes, and so does a trailing dot.
pub fn check_wildcard_domain(domain: &str) -> Result<(), String> {
    check_domain_length(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    if !is_wildcard_label(first) {
        return Err(format!(
            "domain name {} invalid (label {} invalid)",
            Shown(domain),
            Shown(first)
        ));
    }
    match rest {
        Some(rest) => check_dns1123_labels(rest),
        None => Ok(()),
    }
}

/// Whether Istio warns of a partial wildcard (`agent.ValidatePartialWildCard`): a `*` that is
/// not the whole first label.
pub fn is_partial_wildcard(host: &str) -> bool {
    host.contains('*') && host != "*" && !host.starts_with("*.")
}

/// Why a name is not a fully qualified domain name to Istio (`agent.ValidateFQDN`): no
/// wildcard, DNS-1123 labels, the last not a number.
pub fn check_fqdn(domain: &str) -> Result<(), String> {
    check_domain_length(domain)?;
    check_dns1123_labels(domain)
}

fn check_domain_length(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    if domain.len() > MAX_DOMAIN {
        return Err(format!(
            "domain name {} too long ({} bytes; max {MAX_DOMAIN})",
            Shown(domain),
            domain.len()
        ));
    }
    Ok(())
}

/// Istio's `agent.ValidateDNS1123Labels`: labels in either case; the last may be empty (a
/// trailing dot), and is otherwise not a number as Go's `strconv.Atoi` reads one.
fn check_dns1123_labels(domain: &str) -> Result<(), String> {
    let mut labels = domain.split('.').peekable();
    let tld = domain.rsplit('.').next().unwrap_or("");
    if is_go_int(tld) {
        return Err(format!(
            "domain name {} invalid (top level domain {} cannot be all-numeric)",
            Shown(domain),
            Shown(tld)
        ));
    }
    while let Some(label) = labels.next() {
        let last = labels.peek().is_none();
        if last && label.is_empty() {
            return Ok(());
        }
        if !is_istio_label(label) {
            return Err(format!(
                "domain name {} invalid (label {} invalid)",
                Shown(domain),
                Shown(label)
            ));
        }
    }
    Ok(())
}

/// Whether Go's `strconv.Atoi` reads `text` as an int: an optional sign, then decimal digits,
/// within 64 bits (a longer number is an error there, so not "numeric").
fn is_go_int(text: &str) -> bool {
    let digits = text
        .strip_prefix('+')
        .or_else(|| text.strip_prefix('-'))
        .unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && text.parse::<i64>().is_ok()
}

/// Why a label key is invalid to Istio (`labels.Instance.Validate`, endpoint labels):
/// `[prefix/]name`, the prefix DNS-1123 labels (253 at most), the name a qualified name (63 at
/// most).
pub fn check_istio_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    // Istio's prefix pattern takes labels in either case and of any length.
    let prefix_ok = prefix.is_none_or(|p| {
        p.split('.').all(|label| {
            let bytes = label.as_bytes();
            matches!((bytes.first(), bytes.last()), (Some(f), Some(l)) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric())
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
    });
    if !prefix_ok || !is_qualified_name_part(name) {
        return Err(format!("invalid tag key: {}", Shown(key)));
    }
    if prefix.is_some_and(|p| p.len() > MAX_SUBDOMAIN) {
        return Err(format!(
            "invalid tag key: {} (DNS prefix is too long)",
            Shown(key)
        ));
    }
    if name.len() > MAX_LABEL {
        return Err(format!(
            "invalid tag key: {} (name is too long)",
            Shown(key)
        ));
    }
    Ok(())
}

/// A label value to Istio: empty, or `[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]` of any length.
pub fn is_istio_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name_part(value)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, of any length.
fn is_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A Kubernetes DNS subdomain (object names): 1-253 characters, DNS-1123 labels joined by dots.
pub fn is_dns1123_subdomain(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_SUBDOMAIN && value.split('.').all(is_dns1123_label)
}

/// Why a Kubernetes label or annotation key is invalid (`IsQualifiedName`): an optional DNS
/// subdomain prefix and `/`, then a name of 1-63 characters.
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns1123_subdomain(prefix) {
            return Err(format!(
                "key {}: the prefix must be a DNS subdomain (lowercase labels, 253 characters at most)",
                Shown(key)
            ));
        }
    }
    if name.len() > MAX_LABEL || !is_qualified_name_part(name) {
        return Err(format!(
            "key {}: the name must be 1-63 characters of [A-Za-z0-9-_.], alphanumeric at both ends",
            Shown(key)
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or 1-63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn is_label_value(value: &str) -> bool {
    value.len() <= MAX_LABEL && (value.is_empty() || is_qualified_name_part(value))
}

/// The one test of a name against a domain suffix: `name` without `.suffix` at its end
/// (ASCII case ignored, one trailing dot on `name` ignored), when something is left before it.
/// `httpbin.bar.global` under `global` is `httpbin.bar`.
pub fn strip_domain_suffix<'n>(name: &'n str, suffix: &str) -> Option<&'n str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let cut = name.len().checked_sub(suffix.len())?;
    // Compared as bytes: `cut` may fall inside a character of a name that is not ASCII.
    let (head, tail) = (name.as_bytes().get(..cut)?, name.as_bytes().get(cut..)?);
    if !tail.eq_ignore_ascii_case(suffix.as_bytes()) || head.len() < 2 {
        return None;
    }
    match head.split_last() {
        Some((b'.', rest)) => name.get(..rest.len()),
        _ => None,
    }
}

/// The `<name>` and `<namespace>` of a `.global` service host, `<name>.<namespace>.<suffix>`
/// with both lowercase DNS-1123 labels: the one form the `.global` rules, the filter and the
/// DNS shim accept.
pub fn service_host_parts<'h>(host: &'h str, suffix: &str) -> Option<(&'h str, &'h str)> {
    let (name, namespace) = strip_domain_suffix(host, suffix)?.split_once('.')?;
    (is_dns1123_label(name) && is_dns1123_label(namespace)).then_some((name, namespace))
}

/// A value shown in a message: quoted as Rust's `{:?}` does, cut after 64 characters, so one
/// bad field cannot flood a report.
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        match self.0.char_indices().nth(MAX) {
            None => write!(f, "{:?}", self.0),
            Some((end, _)) => write!(f, "{:?}...", self.0.get(..end).unwrap_or("")),
        }
    }
}

/// A value shown in a message without quotes, cut as [`Shown`] cuts it.
#[derive(Clone, Copy)]
pub struct Plain<'a>(pub &'a str);

impl fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        match self.0.char_indices().nth(MAX) {
            None => f.write_str(self.0),
            Some((end, _)) => write!(f, "{}...", self.0.get(..end).unwrap_or("")),
        }
    }
}

/// Shortens a long value for a message, so one bad field cannot flood a report.
pub fn truncate(value: &str) -> String {
    Plain(value).to_string()
}

/// At most a handful of names, joined: `a, b, c, d, e and 3995 more`, or `none`.
pub fn few<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let mut shown = Vec::with_capacity(SHOWN);
    let mut more = 0usize;
    for name in names {
        if shown.len() < SHOWN {
            shown.push(Plain(name).to_string());
        } else {
            more += 1;
        }
    }
    match (shown.is_empty(), more) {
        (true, _) => "none".to_string(),
        (false, 0) => shown.join(", "),
        (false, more) => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The smallest few of `names` in order and how many more, in one pass over any number of
/// names (no sort of them all): `a, b, c, d, e and 3995 more`, or `none`.
pub fn few_smallest<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let mut smallest: Vec<&str> = Vec::with_capacity(SHOWN + 1);
    let mut count = 0usize;
    for name in names {
        count += 1;
        let at = smallest.partition_point(|n| *n < name);
        if at < SHOWN {
            smallest.insert(at, name);
            smallest.truncate(SHOWN);
        }
    }
    let more = count - smallest.len();
    let mut text = few(smallest);
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_label_is_lowercase_alphanumeric_with_inner_dashes() {
        assert!(is_dns1123_label("httpbin"));
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("a-"));
        assert!(!is_dns1123_label("Httpbin"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_label(&"a".repeat(63)));
    }

    #[test]
    fn istio_labels_take_either_case() {
        assert!(is_istio_label("HTTP-1"));
        assert!(!is_istio_label("HTTP_1"));
        assert!(!is_istio_label("é"));
    }

    #[test]
    fn wildcard_labels_as_istio_reads_them() {
        for ok in ["*", "*foo", "*-foo", "foo", "FOO"] {
            assert!(is_wildcard_label(ok), "{ok}");
        }
        for bad in ["foo*", "**", "*-", "*--foo", "f*o", ""] {
            assert!(!is_wildcard_label(bad), "{bad}");
        }
        assert!(!is_wildcard_label(&format!("*{}", "a".repeat(63))));
    }

    #[test]
    fn wildcard_only_in_first_label() {
        assert_eq!(check_wildcard_domain("*.bar.global"), Ok(()));
        assert_eq!(check_wildcard_domain("*foo.bar.global"), Ok(()));
        assert!(is_partial_wildcard("*foo.bar.global"));
        assert!(!is_partial_wildcard("*.bar.global"));
        assert!(check_wildcard_domain("foo*.bar").is_err());
        assert!(check_wildcard_domain("a.*.bar").is_err());
    }

    #[test]
    fn top_level_domain_is_numeric_as_go_reads_an_int() {
        assert!(check_wildcard_domain("foo.123").is_err());
        assert!(check_wildcard_domain("foo.+12").is_err());
        assert!(check_wildcard_domain("foo.007").is_err());
        // Beyond 64 bits, Atoi fails, so the label is not "numeric" (and fails as a label
        // only if it is not one).
        assert_eq!(check_wildcard_domain("foo.99999999999999999999"), Ok(()));
        assert!(check_fqdn("10.0.0.1").is_err());
        assert_eq!(check_wildcard_domain("foo.com."), Ok(()));
        assert_eq!(check_wildcard_domain("foo.123."), Ok(()));
        // A single label is never a top-level domain.
        assert_eq!(check_wildcard_domain("1234"), Ok(()));
        assert!(check_fqdn("1234").is_err());
        assert_eq!(check_fqdn("foo"), Ok(()));
    }

    #[test]
    fn overlong_domain_is_rejected_at_255_bytes() {
        let long = format!("{}.com", "a.".repeat(130));
        assert!(check_wildcard_domain(&long).unwrap_err().contains("255"));
        let exactly = format!("{}a.com", "a.".repeat(125));
        assert_eq!(exactly.len(), 255);
        assert_eq!(check_wildcard_domain(&exactly), Ok(()));
    }

    #[test]
    fn istio_label_keys_and_values() {
        assert!(check_istio_label_key("cluster").is_ok());
        assert!(check_istio_label_key("topology.istio.io/network").is_ok());
        assert!(check_istio_label_key("").is_err());
        assert!(check_istio_label_key("a/b/c").is_err());
        assert!(check_istio_label_key("*").is_err());
        assert!(check_istio_label_key(&"a".repeat(64))
            .unwrap_err()
            .contains("name is too long"));
        assert!(is_istio_label_value(""));
        assert!(is_istio_label_value(&"a".repeat(100)));
        assert!(!is_istio_label_value("-x"));
    }

    #[test]
    fn kubernetes_qualified_names_and_values() {
        assert!(check_qualified_name("app").is_ok());
        assert!(check_qualified_name("networking.istio.io/enable-autoallocate-ip").is_ok());
        assert!(check_qualified_name("Bad.Prefix/x").is_err());
        assert!(check_qualified_name("").is_err());
        assert!(is_label_value(""));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("httpbin-bar.v1"));
        assert!(!is_dns1123_subdomain("Httpbin"));
    }

    #[test]
    fn shown_values_are_quoted_and_cut() {
        assert_eq!(Shown("a\"b").to_string(), "\"a\\\"b\"");
        let long = "é".repeat(100);
        let shown = Shown(&long).to_string();
        assert!(shown.ends_with("\"..."), "{shown}");
        assert_eq!(shown.chars().filter(|c| *c == 'é').count(), 64);
    }

    #[test]
    fn suffix_is_stripped_on_a_label_boundary_in_any_case() {
        assert_eq!(
            strip_domain_suffix("httpbin.bar.GLOBAL.", "global"),
            Some("httpbin.bar")
        );
        assert_eq!(strip_domain_suffix("a.global", "global"), Some("a"));
        assert_eq!(strip_domain_suffix("httpbin.barglobal", "global"), None);
        assert_eq!(strip_domain_suffix("global", "global"), None);
        assert_eq!(strip_domain_suffix(".global", "global"), None);
        assert_eq!(
            strip_domain_suffix("x.svc.cluster.local", "svc.cluster.local"),
            Some("x")
        );
        // Multi-byte characters where the suffix would start must not split a character.
        assert_eq!(strip_domain_suffix("®ਫ਼A00 ", "global"), None);
        assert_eq!(strip_domain_suffix("aਫ਼bal", "global"), None);
        assert_eq!(strip_domain_suffix("ਫ਼.global", "global"), Some("ਫ਼"));
        assert_eq!(strip_domain_suffix("ਫ਼global", "global"), None);
    }

    #[test]
    fn few_smallest_picks_in_order_without_sorting_all() {
        let many: Vec<String> = (0..4000).rev().map(|i| format!("p{i:04}")).collect();
        assert_eq!(
            few_smallest(many.iter().map(String::as_str)),
            "p0000, p0001, p0002, p0003, p0004 and 3995 more"
        );
        assert_eq!(few_smallest(["b", "a"]), "a, b");
        assert_eq!(few_smallest([]), "none");
    }

    #[test]
    fn few_lists_a_handful() {
        assert_eq!(few([]), "none");
        assert_eq!(few(["a", "b"]), "a, b");
        let many: Vec<String> = (0..4000).map(|i| format!("p{i}")).collect();
        assert_eq!(
            few(many.iter().map(String::as_str)),
            "p0, p1, p2, p3, p4 and 3995 more"
        );
    }
}
