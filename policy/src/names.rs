//! Name syntax shared by the rules: DNS-1123 labels, domains, Kubernetes label keys and values.

/// A DNS-1123 label as Kubernetes defines it: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(value: &str) -> bool {
    is_label_with(value, |c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The label form Istio accepts inside hostnames: as DNS-1123 but in either case.
pub fn is_host_label(value: &str) -> bool {
    is_label_with(value, |c| c.is_ascii_alphanumeric())
}

fn is_label_with(value: &str, alnum: impl Fn(char) -> bool) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return false;
    }
    let first = value.chars().next();
    let last = value.chars().next_back();
    first.is_some_and(&alnum)
        && last.is_some_and(&alnum)
        && value.chars().all(|c| alnum(c) || c == '-')
}

/// Why a hostname is not acceptable to Istio, or `Ok` with whether it is a partial
/// wildcard (`*foo.example.com`), which Istio accepts with a warning.
pub fn check_wildcard_domain(domain: &str) -> Result<bool, String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    if domain.len() > 255 {
        return Err(format!(
            "domain name {:?} is {} characters long; the limit is 255",
            truncate(domain),
            domain.len()
        ));
    }
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    let partial = if first == "*" {
        false
    } else if let Some(tail) = first.strip_prefix("*-").or_else(|| first.strip_prefix('*')) {
        if !is_host_label(tail) {
            return Err(format!(
                "domain name {domain:?} invalid (label {first:?} invalid)"
            ));
        }
        true
    } else if is_host_label(first) {
        false
    } else {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    };
    match rest {
        Some(rest) => check_labels(domain, rest)?,
        None => check_top_level(domain, first)?,
    }
    Ok(partial)
}

/// Checks a fully qualified domain name with no wildcard (endpoint addresses, DNS hosts).
pub fn check_fqdn(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    if domain.len() > 255 {
        return Err(format!(
            "domain name {:?} is {} characters long; the limit is 255",
            truncate(domain),
            domain.len()
        ));
    }
    check_labels(domain, domain)
}

fn check_labels(domain: &str, labels: &str) -> Result<(), String> {
    let parts: Vec<&str> = labels.split('.').collect();
    for (i, label) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last && label.is_empty() && i > 0 {
            // One trailing dot: a rooted name.
            return Ok(());
        }
        if !is_host_label(label) {
            return Err(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
        if last {
            check_top_level(domain, label)?;
        }
    }
    Ok(())
}

fn check_top_level(domain: &str, label: &str) -> Result<(), String> {
    if !label.is_empty() && label.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "domain name {domain:?} invalid (top level domain {label:?} cannot be all-numeric)"
        ));
    }
    Ok(())
}

/// Why a Kubernetes label key (`[prefix/]name`) is invalid.
pub fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("label key must not be empty".to_string());
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let subdomain_ok =
            !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_dns1123_label);
        if !subdomain_ok {
            return Err(format!(
                "label key {key:?} has an invalid prefix {prefix:?} (must be a DNS subdomain)"
            ));
        }
    }
    if !is_label_value(name) || name.is_empty() {
        return Err(format!(
            "label key {key:?} invalid (name part must be 1-63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or 1-63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn is_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    if value.len() > 63 {
        return false;
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    value.chars().next().is_some_and(alnum)
        && value.chars().next_back().is_some_and(alnum)
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Shortens a long value for a message, so one bad field cannot flood a report.
pub fn truncate(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}...")
    }
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
    fn wildcard_only_in_first_label() {
        assert_eq!(check_wildcard_domain("*.bar.global"), Ok(false));
        assert_eq!(check_wildcard_domain("*foo.bar.global"), Ok(true));
        assert!(check_wildcard_domain("foo*.bar").is_err());
        assert!(check_wildcard_domain("a.*.bar").is_err());
    }

    #[test]
    fn all_numeric_top_level_domain_is_rejected() {
        assert!(check_wildcard_domain("foo.123").is_err());
        assert!(check_fqdn("10.0.0.1").is_err());
        assert_eq!(check_wildcard_domain("foo.com."), Ok(false));
    }

    #[test]
    fn overlong_domain_is_rejected() {
        let long = format!("{}.com", "a.".repeat(130));
        assert!(check_wildcard_domain(&long).unwrap_err().contains("255"));
    }

    #[test]
    fn label_keys_follow_kubernetes() {
        assert!(check_label_key("cluster").is_ok());
        assert!(check_label_key("topology.istio.io/network").is_ok());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("a/b/c").is_err());
        assert!(check_label_key("*").is_err());
        assert!(is_label_value("cluster2"));
        assert!(!is_label_value("-x"));
    }
}
