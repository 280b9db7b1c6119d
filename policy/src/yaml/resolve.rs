//! What a scalar means, and how YAMLToJSON writes it: go-yaml v2's `resolve.go` and the parts
//! of sigs.k8s.io/yaml and `encoding/json` that turn values into JSON.
//!
//! * Plain scalars are resolved by go-yaml's table and number rules (YAML 1.1 flavoured):
//!   `yes/no/on/off/y/n` are booleans, `0777` is octal, `08` is 8 (not octal, so it falls
//!   through to the float rule), `1_000` is 1000, `0x1F`/`0o17`/`0b101` are integers, `1e3`
//!   is a float, timestamps stay strings, no base 60. Quoted scalars are strings.
//! * Tags: `!!str !!int !!float !!bool !!null !!timestamp !!binary` are applied with go-yaml's
//!   checks (`!!int 1.5` is an error, `!!float 8000` is fine); any other tag, and `!`, makes
//!   the scalar a string.
//! * Floats are written as `encoding/json` writes a float64 (`1e3` → `1000`, an integer for
//!   the API server; `1e21` → `1e+21`), NaN and ±Inf are errors; as map keys they are written
//!   as float32 `%g` (`1234567.0:` → `"1.234567e+06"`), as sigs.k8s.io/yaml does.
//!
//! The resulting JSON numbers are exactly what `serde_json` reads from the JSON text YAMLToJSON
//! prints, because we print that text (only for floats, which are rare) and let serde_json
//! read it.

use std::borrow::Cow;

/// A resolved scalar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
}

pub(crate) const TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// The core tags go-yaml knows, by their short name.
fn core_tag(tag: &str) -> Option<&str> {
    tag.strip_prefix(TAG_PREFIX)
}

/// Whether a scalar in key position is a merge key: a plain (or `!`-tagged) `<<`, or any `<<`
/// tagged `!!merge`.
pub(crate) fn is_merge_key(value: &str, tag: Option<&str>, plain_implicit: bool) -> bool {
    value == "<<" && (plain_implicit || tag.and_then(core_tag) == Some("merge"))
}

/// Resolves a scalar as go-yaml's decoder does for an `interface{}` target.
pub(crate) fn resolve<'a>(
    value: Cow<'a, str>,
    tag: Option<&str>,
    plain_implicit: bool,
) -> Result<Resolved<'a>, String> {
    match tag {
        None if !plain_implicit => Ok(Resolved::Str(value)),
        None => Ok(resolve_plain(value)),
        Some(tag) => resolve_tagged(value, tag),
    }
}

/// An untagged plain scalar.
pub(crate) fn resolve_plain(value: Cow<'_, str>) -> Resolved<'_> {
    match plain_kind(&value) {
        Some(r) => r,
        None => Resolved::Str(value),
    }
}

/// Whether a plain scalar may mean something other than a string (go-yaml's hint: only
/// these first characters, or none, can start a non-string).
#[inline]
pub(crate) fn may_resolve(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        None | Some(
            b'+' | b'-' | b'0'
                ..=b'9'
                    | b'y'
                    | b'Y'
                    | b'n'
                    | b'N'
                    | b't'
                    | b'T'
                    | b'f'
                    | b'F'
                    | b'o'
                    | b'O'
                    | b'~'
                    | b'.'
        )
    )
}

/// The non-string meaning of a plain scalar, if it has one.
fn plain_kind(s: &str) -> Option<Resolved<'static>> {
    if !may_resolve(s) {
        return None;
    }
    let Some(&first) = s.as_bytes().first() else {
        return Some(Resolved::Null);
    };
    if let Some(r) = table(s) {
        return Some(r);
    }
    match first {
        b'.' => go_parse_float_syntax(s).map(Resolved::Float),
        b'+' | b'-' | b'0'..=b'9' => number(s),
        _ => None,
    }
}

/// go-yaml's exact-match table.
#[inline]
fn table(s: &str) -> Option<Resolved<'static>> {
    // No entry is longer than five characters.
    if s.len() > 5 {
        return None;
    }
    Some(match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Resolved::Bool(false)
        }
        "~" | "null" | "Null" | "NULL" => Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Resolved::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// The number rules for a scalar starting with a digit or a sign: underscores removed, then
/// Go's `ParseInt(s, 0, 64)`, `ParseUint(s, 0, 64)`, the YAML float pattern, and the `0b`
/// fallback. (The timestamp check go-yaml makes first cannot change the outcome here: a
/// timestamp is kept as its string, and no timestamp reads as a number.)
fn number(s: &str) -> Option<Resolved<'static>> {
    let plain: Cow<'_, str> = if s.contains('_') {
        Cow::Owned(s.replace('_', ""))
    } else {
        Cow::Borrowed(s)
    };
    let p = plain.as_bytes();
    // ParseInt and ParseUint share the digits: parse the magnitude once. ParseUint takes no
    // sign; ParseInt takes one and the range of int64.
    let (sign, digits) = match p {
        [b'-', rest @ ..] => (Some(true), rest),
        [b'+', rest @ ..] => (Some(false), rest),
        _ => (None, p),
    };
    if let Some(u) = go_parse_uint(digits) {
        match sign {
            None => {
                return Some(match i64::try_from(u) {
                    Ok(i) => Resolved::Int(i),
                    Err(_) => Resolved::UInt(u),
                })
            }
            Some(neg) => {
                if let Some(i) = signed(neg, u) {
                    return Some(Resolved::Int(i));
                }
            }
        }
    }
    if yaml_float_pattern(p) {
        if let Some(f) = parse_finite(&plain) {
            return Some(Resolved::Float(f));
        }
    }
    if let Some(rest) = p.strip_prefix(b"0b") {
        if let Some(i) = go_parse_int_radix(rest, 2) {
            return Some(Resolved::Int(i));
        }
        if let Some(u) = parse_digits(rest, 2) {
            return Some(Resolved::UInt(u));
        }
    } else if let Some(rest) = p.strip_prefix(b"-0b") {
        // ParseInt("-" + rest, 2): a second sign is refused by ParseUint.
        if let Some(u) = parse_digits(rest, 2) {
            if u <= 1u64 << 63 {
                return Some(Resolved::Int((u as i64).wrapping_neg()));
            }
        }
    }
    None
}

/// Rust's float parser rounds as Go's does; Go reports overflow as an error, so do we.
fn parse_finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_float_pattern(s: &[u8]) -> bool {
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let from = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    if s.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == s.len()
}

/// Digits of `radix` (no sign, no prefix), at least one... or none: Go's ParseUint of an
/// empty remainder after a base prefix is 0 only for the octal "0" case, handled by callers.
fn parse_digits(s: &[u8], radix: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        let d = (b as char).to_digit(radix)?;
        n = n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Go's `strconv.ParseUint(s, 0, 64)` (no underscores: they were removed).
pub(crate) fn go_parse_uint(s: &[u8]) -> Option<u64> {
    match s {
        [] => None,
        [b'0'] => Some(0),
        [b'0', p, rest @ ..] if !rest.is_empty() && matches!(p, b'b' | b'B') => {
            parse_digits(rest, 2)
        }
        [b'0', p, rest @ ..] if !rest.is_empty() && matches!(p, b'o' | b'O') => {
            parse_digits(rest, 8)
        }
        [b'0', p, rest @ ..] if !rest.is_empty() && matches!(p, b'x' | b'X') => {
            parse_digits(rest, 16)
        }
        [b'0', rest @ ..] => parse_digits(rest, 8),
        _ => parse_digits(s, 10),
    }
}

/// Go's `strconv.ParseInt(s, radix, 64)` for an explicit radix.
fn go_parse_int_radix(s: &[u8], radix: u32) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    signed(neg, parse_digits(digits, radix)?)
}

fn signed(neg: bool, u: u64) -> Option<i64> {
    if neg {
        if u <= 1u64 << 63 {
            Some((u as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for a decimal number that may contain underscores between
/// digits (go-yaml uses it unmodified for scalars starting with `.`).
fn go_parse_float_syntax(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    let mut dot = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => digits += 1,
            b'_' => {}
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    if i != b.len() || !underscore_ok(b) {
        return None;
    }
    parse_finite(&s.replace('_', ""))
}

/// Go's `underscoreOK`: underscores only between digits.
fn underscore_ok(s: &[u8]) -> bool {
    let s = match s.first() {
        Some(b'+' | b'-') => s.get(1..).unwrap_or(&[]),
        _ => s,
    };
    // `saw`: b'^' start, b'0' digit, b'_' underscore, b'!' other.
    let mut saw = b'^';
    for &c in s {
        if c.is_ascii_digit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// A tagged scalar (also a quoted one with a tag, and a plain one tagged `!`).
fn resolve_tagged<'a>(value: Cow<'a, str>, tag: &str) -> Result<Resolved<'a>, String> {
    let short = match core_tag(tag) {
        Some(short) => short,
        // `!`, `!foo`, `!<...>`, `%TAG` handles: kept as a string, no implicit typing.
        None => return Ok(Resolved::Str(value)),
    };
    match short {
        "str" => Ok(Resolved::Str(value)),
        "binary" => match go_base64(&value) {
            Some(bytes) => Ok(Resolved::Str(Cow::Owned(go_lossy_utf8(&bytes)))),
            None => Err("!!binary value contains invalid base64 data".to_owned()),
        },
        "bool" | "int" | "float" | "null" | "timestamp" => {
            let got = if short == "timestamp" && go_parse_timestamp(&value) {
                return Ok(Resolved::Str(value));
            } else {
                match plain_kind(&value) {
                    Some(r) => r,
                    None => Resolved::Str(Cow::Borrowed("")),
                }
            };
            let got_tag = match &got {
                Resolved::Null => "null",
                Resolved::Bool(_) => "bool",
                Resolved::Int(_) | Resolved::UInt(_) => "int",
                Resolved::Float(_) => "float",
                Resolved::Str(_) => "str",
            };
            if got_tag == short {
                return Ok(got);
            }
            if short == "float" {
                if let Resolved::Int(i) = got {
                    return Ok(Resolved::Float(i as f64));
                }
            }
            Err(format!(
                "cannot decode !!{got_tag} `{value}` as a !!{short}"
            ))
        }
        // `!!merge`, `!!map`, `!!seq`, `!!set`... on a scalar: a string.
        _ => Ok(Resolved::Str(value)),
    }
}

/// Go's `base64.StdEncoding.DecodeString`: padding required, `\r` and `\n` ignored.
fn go_base64(s: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let groups = bytes.len() / 4;
    for (g, chunk) in bytes.chunks(4).enumerate() {
        let last = g + 1 == groups;
        let (a, b, c, d) = match chunk {
            [a, b, c, d] => (*a, *b, *c, *d),
            _ => return None,
        };
        let (a, b) = (val(a)?, val(b)?);
        if last && c == b'=' {
            if d != b'=' {
                return None;
            }
            out.push(((a << 2) | (b >> 4)) as u8);
        } else if last && d == b'=' {
            let c = val(c)?;
            out.push(((a << 2) | (b >> 4)) as u8);
            out.push((((b & 0xF) << 4) | (c >> 2)) as u8);
        } else {
            let (c, d) = (val(c)?, val(d)?);
            let n = (a << 18) | (b << 12) | (c << 6) | d;
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        }
    }
    Some(out)
}

/// Bytes as `encoding/json` writes them: each byte that does not start a valid UTF-8 sequence
/// becomes one U+FFFD (Go's rule, which differs from `String::from_utf8_lossy`).
pub(crate) fn go_lossy_utf8(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or(""));
                out.push('\u{FFFD}');
                bytes = rest.get(1..).unwrap_or(&[]);
            }
        }
    }
}

/// Whether `s` parses with one of go-yaml's timestamp layouts (`time.Parse`):
/// `2006-1-2T15:4:5.999999999Z07:00` (also with `t`), `2006-1-2 15:4:5.999999999`, `2006-1-2`.
pub(crate) fn go_parse_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    // Quick check, as go-yaml: four digits then '-'.
    if b.len() < 5 || !b.iter().take(4).all(u8::is_ascii_digit) || b.get(4) != Some(&b'-') {
        return false;
    }
    let year: u32 = b
        .iter()
        .take(4)
        .fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    let mut i = 5;
    // Go's getnum: one or two digits.
    let num = |i: &mut usize| -> Option<u32> {
        let d0 = b.get(*i).filter(|c| c.is_ascii_digit())?;
        *i += 1;
        let mut n = u32::from(d0 - b'0');
        if let Some(d1) = b.get(*i).filter(|c| c.is_ascii_digit()) {
            n = n * 10 + u32::from(d1 - b'0');
            *i += 1;
        }
        Some(n)
    };
    let Some(month) = num(&mut i) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = num(&mut i) else {
        return false;
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in(month, year) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    // The time part: 'T', 't' (with a zone) or spaces (without).
    let zoned = match b.get(i) {
        Some(b'T' | b't') => {
            i += 1;
            true
        }
        Some(b' ') => {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            false
        }
        _ => return false,
    };
    let Some(hour) = num(&mut i) else {
        return false;
    };
    if b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    let Some(minute) = num(&mut i) else {
        return false;
    };
    if b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    let Some(second) = num(&mut i) else {
        return false;
    };
    if hour >= 24 || minute >= 60 || second >= 60 {
        return false;
    }
    // Optional fraction: '.' or ',' and digits.
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if zoned {
        match b.get(i) {
            Some(b'Z') => i += 1,
            Some(b'+' | b'-') => {
                let two = |j: usize| -> Option<u32> {
                    let h = b.get(j).filter(|c| c.is_ascii_digit())?;
                    let l = b.get(j + 1).filter(|c| c.is_ascii_digit())?;
                    Some(u32::from(h - b'0') * 10 + u32::from(l - b'0'))
                };
                let (Some(hh), Some(b':'), Some(mm)) = (two(i + 1), b.get(i + 3), two(i + 4))
                else {
                    return false;
                };
                if hh > 24 || mm > 60 {
                    return false;
                }
                i += 6;
            }
            _ => return false,
        }
    }
    i == b.len()
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// ----- writing numbers as YAMLToJSON does ------------------------------------------------------

/// Shortest round-trip digits of a finite, non-zero float: (negative, digits, exponent of the
/// first digit), from Rust's shortest formatting (the same digits Go's shortest formatting
/// picks).
fn shortest_digits(text: &str) -> (bool, String, i32) {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp) = t.split_once('e').unwrap_or((t, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (neg, digits, exp.parse().unwrap_or(0))
}

/// Go's `%f` with shortest digits.
fn format_fixed(neg: bool, digits: &str, exp: i32) -> String {
    let mut s = String::with_capacity(digits.len() + 8);
    if neg {
        s.push('-');
    }
    let dp = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    if dp <= 0 {
        s.push_str("0.");
        for _ in 0..(-dp) {
            s.push('0');
        }
        s.push_str(digits);
    } else if dp >= n {
        s.push_str(digits);
        for _ in 0..(dp - n) {
            s.push('0');
        }
    } else {
        let (a, b) = digits.split_at(dp as usize);
        s.push_str(a);
        s.push('.');
        s.push_str(b);
    }
    s
}

/// Go's `%e` with shortest digits (exponent with a sign and at least two digits).
fn format_exp(neg: bool, digits: &str, exp: i32) -> String {
    let mut s = String::with_capacity(digits.len() + 8);
    if neg {
        s.push('-');
    }
    let mut chars = digits.chars();
    if let Some(c) = chars.next() {
        s.push(c);
    }
    let rest = chars.as_str();
    if !rest.is_empty() {
        s.push('.');
        s.push_str(rest);
    }
    s.push('e');
    s.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        s.push('0');
    }
    s.push_str(&e.to_string());
    s
}

/// The JSON text `encoding/json` writes for a finite float64.
pub(crate) fn go_json_float_text(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (neg, digits, exp) = shortest_digits(&format!("{f:e}"));
    let abs = f.abs();
    if !(1e-6..1e21).contains(&abs) {
        let mut s = format_exp(neg, &digits, exp);
        // encoding/json writes e-07 as e-7.
        if let Some(pos) = s.find("e-0") {
            s.remove(pos + 2);
        }
        s
    } else {
        format_fixed(neg, &digits, exp)
    }
}

/// The JSON number YAMLToJSON gives for a float value (NaN and ±Inf are refused, as
/// `encoding/json` refuses them).
pub(crate) fn json_number_of_float(f: f64) -> Result<serde_json::Number, String> {
    if f.is_nan() {
        return Err("json: unsupported value: NaN".to_owned());
    }
    if f.is_infinite() {
        return Err(format!(
            "json: unsupported value: {}Inf",
            if f > 0.0 { "+" } else { "-" }
        ));
    }
    // Integral values print without a fraction, so the API server reads them as integers.
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        if f == 0.0 && f.is_sign_negative() {
            return serde_json::from_str("-0").map_err(|e| e.to_string());
        }
        return Ok(serde_json::Number::from(f as i64));
    }
    serde_json::from_str(&go_json_float_text(f)).map_err(|e| e.to_string())
}

/// A float map key as sigs.k8s.io/yaml writes it: `strconv.FormatFloat(k, 'g', -1, 32)` with
/// YAML's spellings of the special values.
pub(crate) fn float_key(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return ".nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (neg, digits, exp) = shortest_digits(&format!("{x:e}"));
    // %g with shortest digits uses %e when the exponent is < -4 or >= 6 (Go's eprec for
    // shortest formatting).
    if !(-4..6).contains(&exp) {
        format_exp(neg, &digits, exp)
    } else {
        format_fixed(neg, &digits, exp)
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // YAML test values that happen to be close to pi
mod tests {
    use super::*;

    fn plain(s: &str) -> Resolved<'_> {
        resolve_plain(Cow::Borrowed(s))
    }

    #[test]
    fn booleans_and_nulls_follow_go_yaml_table() {
        for s in [
            "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE",
        ] {
            assert_eq!(plain(s), Resolved::Bool(true), "{s}");
        }
        for s in ["n", "N", "no", "NO", "off", "OFF", "false", "FALSE"] {
            assert_eq!(plain(s), Resolved::Bool(false), "{s}");
        }
        for s in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain(s), Resolved::Null, "{s:?}");
        }
        for s in [
            "yEs", "oN", "tRUE", "nUll", "inf", "nan", "Infinity", "<<", "=",
        ] {
            assert_eq!(plain(s), Resolved::Str(Cow::Borrowed(s)), "{s}");
        }
    }

    #[test]
    fn integers_follow_go_parse_int_base_0() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("+42", 42),
            ("00", 0),
            ("007", 7),
            ("0777", 511),
            ("0o777", 511),
            ("0O17", 15),
            ("0x1F", 31),
            ("-0x1F", -31),
            ("+0x1F", 31),
            ("0b1010", 10),
            ("0B11", 3),
            ("-0b101", -5),
            ("1_000", 1000),
            ("0x_FF", 255),
            ("1__0", 10),
            ("1_", 1),
            ("-0", 0),
            ("0b-101", -5),
            ("-9223372036854775808", i64::MIN),
        ];
        for (s, v) in cases {
            assert_eq!(plain(s), Resolved::Int(*v), "{s}");
        }
        assert_eq!(plain("18446744073709551615"), Resolved::UInt(u64::MAX));
        assert_eq!(plain("_1"), Resolved::Str(Cow::Borrowed("_1")));
        assert_eq!(plain("0x"), Resolved::Str(Cow::Borrowed("0x")));
    }

    #[test]
    fn not_octal_falls_through_to_float() {
        assert_eq!(plain("08"), Resolved::Float(8.0));
        assert_eq!(plain("08080"), Resolved::Float(8080.0));
        assert_eq!(plain("08.5"), Resolved::Float(8.5));
    }

    #[test]
    fn floats_and_strings() {
        assert_eq!(plain("1e3"), Resolved::Float(1000.0));
        assert_eq!(plain(".5"), Resolved::Float(0.5));
        assert_eq!(plain(".5_0"), Resolved::Float(0.5));
        assert_eq!(plain("5."), Resolved::Float(5.0));
        assert_eq!(plain("1e-400"), Resolved::Float(0.0));
        for s in [
            "1e400",
            "0x1p3",
            "1.2.3",
            "10.0.0.1",
            "1,000",
            "1:20",
            "2001-12-14",
            "._5",
        ] {
            assert_eq!(plain(s), Resolved::Str(Cow::Borrowed(s)), "{s}");
        }
        assert!(matches!(plain(".nan"), Resolved::Float(f) if f.is_nan()));
        assert_eq!(plain("-.inf"), Resolved::Float(f64::NEG_INFINITY));
    }

    fn tagged(tag: &str, v: &str) -> Result<Resolved<'static>, String> {
        resolve(
            Cow::Owned(v.to_owned()),
            Some(&format!("{TAG_PREFIX}{tag}")),
            false,
        )
    }

    #[test]
    fn tags_apply_go_yaml_checks() {
        assert_eq!(tagged("int", "8000"), Ok(Resolved::Int(8000)));
        assert_eq!(tagged("int", "0x1F"), Ok(Resolved::Int(31)));
        assert!(tagged("int", "1.5").is_err());
        assert!(tagged("int", "abc").is_err());
        assert_eq!(tagged("float", "8000"), Ok(Resolved::Float(8000.0)));
        assert!(tagged("float", "18446744073709551615").is_err());
        assert_eq!(tagged("bool", "yes"), Ok(Resolved::Bool(true)));
        assert!(tagged("bool", "1").is_err());
        assert_eq!(tagged("null", ""), Ok(Resolved::Null));
        assert!(tagged("null", "foo").is_err());
        assert_eq!(
            tagged("str", "0777"),
            Ok(Resolved::Str(Cow::Borrowed("0777")))
        );
        assert_eq!(
            tagged("binary", "aGVsbG8="),
            Ok(Resolved::Str(Cow::Borrowed("hello")))
        );
        assert_eq!(
            tagged("binary", "/w=="),
            Ok(Resolved::Str(Cow::Borrowed("\u{FFFD}")))
        );
        assert!(tagged("binary", "not base64!").is_err());
        assert_eq!(
            tagged("timestamp", "2001-12-14"),
            Ok(Resolved::Str(Cow::Borrowed("2001-12-14")))
        );
        assert!(tagged("timestamp", "foo").is_err());
        assert_eq!(
            resolve(Cow::Borrowed("123"), Some("!foo"), false),
            Ok(Resolved::Str(Cow::Borrowed("123")))
        );
        assert_eq!(
            resolve(Cow::Borrowed("123"), Some("!"), true),
            Ok(Resolved::Str(Cow::Borrowed("123")))
        );
        assert_eq!(
            resolve(Cow::Borrowed("yes"), None, false),
            Ok(Resolved::Str(Cow::Borrowed("yes")))
        );
    }

    #[test]
    fn merge_keys() {
        assert!(is_merge_key("<<", None, true));
        assert!(!is_merge_key("<<", None, false));
        assert!(is_merge_key("<<", Some("tag:yaml.org,2002:merge"), false));
        assert!(!is_merge_key("<<", Some("!foo"), false));
    }

    #[test]
    fn timestamps() {
        for s in [
            "2001-12-14",
            "2001-1-2",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14T21:59:43Z",
            "2001-12-14 21:59:43.10",
        ] {
            assert!(go_parse_timestamp(s), "{s}");
        }
        for s in [
            "2001-12-14 21:59:43.10 -5",
            "2001-02-30",
            "2001-13-01",
            "201-1-1",
            "2001-12-14T1",
        ] {
            assert!(!go_parse_timestamp(s), "{s}");
        }
    }

    #[test]
    fn base64_like_go() {
        assert_eq!(go_base64("aGVs\nbG8="), Some(b"hello".to_vec()));
        assert_eq!(go_base64(""), Some(vec![]));
        assert_eq!(go_base64("aGVsbG8"), None);
        assert_eq!(go_base64("aG==bG8="), None);
        assert_eq!(go_base64("a==="), None);
        assert_eq!(go_lossy_utf8(&[0xE2, 0x82, b'A']), "\u{FFFD}\u{FFFD}A");
    }

    #[test]
    fn float_values_as_encoding_json_writes_them() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (-0.0, "-0"),
            (1.5e3, "1500"),
            (3.14159265358979, "3.14159265358979"),
            (1e100, "1e+100"),
            (1.5e-10, "1.5e-10"),
        ];
        for (f, text) in cases {
            assert_eq!(go_json_float_text(*f), *text, "{f}");
        }
        assert_eq!(
            json_number_of_float(8000.0),
            Ok(serde_json::Number::from(8000))
        );
        assert_eq!(
            json_number_of_float(1e20).ok().and_then(|n| n.as_f64()),
            Some(1e20)
        );
        assert!(json_number_of_float(f64::NAN).is_err());
        assert!(json_number_of_float(f64::INFINITY).is_err());
    }

    #[test]
    fn float_keys_as_float32_g() {
        let cases: &[(f64, &str)] = &[
            (1000.0, "1000"),
            (1.0, "1"),
            (8080.0, "8080"),
            (3.14159265358979, "3.1415927"),
            (1234567.0, "1.234567e+06"),
            (1e10, "1e+10"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (-0.0, "-0"),
            (f64::INFINITY, ".inf"),
            (f64::NEG_INFINITY, "-.inf"),
            (f64::NAN, ".nan"),
            (1e300, ".inf"),
            (1.5, "1.5"),
            (123456.7, "123456.7"),
        ];
        for (f, text) in cases {
            assert_eq!(float_key(*f), *text, "{f}");
        }
    }
}
