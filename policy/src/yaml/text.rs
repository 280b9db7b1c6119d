//! Text before YAML: kubectl's decoding of file bytes, its `---` splitting, and the characters
//! go-yaml refuses.
//!
//! * [`decode_text`] is what `kubectl -f` does to a file's bytes (`unicode.BOMOverride` over a
//!   UTF-8 decoder): a UTF-8 BOM is dropped, a UTF-16 BOM switches to UTF-16 (LE or BE), and
//!   invalid UTF-8 becomes U+FFFD per maximal ill-formed subsequence (the W3C rule, which
//!   `String::from_utf8_lossy` also follows). UTF-32 is not detected (kubectl does not either).
//! * [`next_chunk`] is apimachinery's `YAMLReader`: it reads lines, and a line whose first
//!   three characters are `---` ends the document being collected, provided the rest of the
//!   line is blank or a comment; anything else there (`--- {a: 1}`, `---a`, `----`) is the
//!   error "invalid Yaml document separator". A separator line that starts a document stays in
//!   it (go-yaml then sees an explicit `---`). kubectl turns CR LF into LF as it reads lines;
//!   go-yaml treats both the same, so chunks are borrowed unchanged.
//! * [`check_chars`] is go-yaml's reader check: only TAB, LF, CR, printable ASCII, NEL and the
//!   non-control Unicode ranges are allowed, anywhere (comments included); anything else is
//!   "control characters are not allowed". go-yaml checks lazily as it reads, a few hundred
//!   bytes ahead; we check each document whole, which only differs for a control character
//!   far behind the end of a document's root node, where go-yaml stops reading.

use std::borrow::Cow;

use super::error::{Error, Origin};

/// kubectl's reading of a file's bytes as text: a UTF-8 BOM is dropped, UTF-16 with a BOM is
/// decoded, and invalid UTF-8 is replaced by U+FFFD (as `kubectl -f` does; YAMLToJSON alone
/// would refuse it).
///
/// One deviation: after a UTF-8 BOM kubectl passes the bytes on unchecked and go-yaml then
/// refuses invalid UTF-8; here they are replaced like everywhere else.
pub fn decode_text(bytes: &[u8]) -> Cow<'_, str> {
    match bytes {
        [0xFF, 0xFE, rest @ ..] => Cow::Owned(decode_utf16(rest, u16::from_le_bytes)),
        [0xFE, 0xFF, rest @ ..] => Cow::Owned(decode_utf16(rest, u16::from_be_bytes)),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest),
        _ => String::from_utf8_lossy(bytes),
    }
}

/// UTF-16 units to text; unpaired surrogates and an odd last byte become U+FFFD.
fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|c| match c {
        [a, b] => unit([*a, *b]),
        _ => 0xFFFD,
    });
    let mut s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or('\u{FFFD}'))
        .collect();
    if bytes.len() % 2 == 1 {
        s.push('\u{FFFD}');
    }
    s
}

/// Go's `unicode.IsSpace` (the Unicode White_Space property, which is also Rust's
/// `char::is_whitespace`).
pub(crate) fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

/// apimachinery's `YAMLOrJSONDecoder` reads a stream as JSON when the first non-space
/// character within its first 4096 bytes is `{`.
pub(crate) fn looks_like_json(text: &str) -> bool {
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() > 4096 {
            return false;
        }
        if !is_go_space(c) {
            return c == '{';
        }
    }
    false
}

/// The result of looking for the next document in YAML mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// A document spans `start..end`; reading goes on at `next`; `lines` line breaks lie
    /// between `start` and `next`; `bad` is the first character go-yaml refuses in the
    /// document (see [`check_chars`]), if any.
    Doc {
        start: usize,
        end: usize,
        next: usize,
        lines: usize,
        bad: Option<usize>,
    },
    /// A separator line starting at `at` (after `lines` line breaks) has something after
    /// `---`.
    BadSeparator {
        at: usize,
        lines: usize,
        rest: String,
    },
    /// No more documents.
    End,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes of `x` below `n` (n <= 0x80), as high bits (the usual SWAR trick).
#[inline(always)]
fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO.wrapping_mul(u64::from(n))) & !x & HI
}

/// Bytes of `x` equal to `b`, as high bits (may also flag a byte right after a match, which
/// only means a closer look).
#[inline(always)]
fn bytes_equal(x: u64, b: u8) -> u64 {
    bytes_below(x ^ LO.wrapping_mul(u64::from(b)), 1)
}

/// Whether the character at byte `at` is one go-yaml refuses: C0 controls other than TAB,
/// LF and CR, DEL, C1 controls other than NEL, U+FFFE and U+FFFF.
#[inline]
fn refused_at(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at) {
        Some(&b) if b < 0x20 => !matches!(b, b'\t' | b'\n' | b'\r'),
        Some(0x7F) => true,
        Some(0xC2) => bytes
            .get(at + 1)
            .is_some_and(|&b| (0x80..=0x9F).contains(&b) && b != 0x85),
        Some(0xEF) => {
            bytes.get(at + 1) == Some(&0xBF) && matches!(bytes.get(at + 2), Some(0xBE | 0xBF))
        }
        _ => false,
    }
}

/// The end of the line starting at `p` (the index of its `\n`, or the text's length), and
/// the first refused character on it. Eight bytes at a time: a word of printable ASCII is
/// skipped whole, and in other words only the flagged bytes are looked at.
fn scan_line(bytes: &[u8], mut p: usize) -> (usize, Option<usize>) {
    let mut bad = None;
    while let Some(word) = bytes.get(p..p + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w);
        let flagged = bytes_below(x, 0x20) | bytes_equal(x, 0x7F) | (x & HI);
        if flagged == 0 {
            p += 8;
            continue;
        }
        // The lowest flag of these masks is exact, so this finds the first LF.
        let lf = bytes_equal(x, b'\n');
        let end = if lf == 0 {
            8
        } else {
            (lf.trailing_zeros() / 8) as usize
        };
        if bad.is_none() {
            let mut m = flagged;
            while m != 0 {
                let i = (m.trailing_zeros() / 8) as usize;
                if i >= end {
                    break;
                }
                if refused_at(bytes, p + i) {
                    bad = Some(p + i);
                    break;
                }
                m &= m - 1;
            }
        }
        if lf != 0 {
            return (p + end, bad);
        }
        p += 8;
    }
    while p < bytes.len() {
        if bytes.get(p) == Some(&b'\n') {
            return (p, bad);
        }
        if bad.is_none() && refused_at(bytes, p) {
            bad = Some(p);
        }
        p += 1;
    }
    (bytes.len(), bad)
}

/// kubectl's `YAMLReader.Read`: the next document starting at byte `from`.
pub(crate) fn next_chunk(text: &str, from: usize) -> Chunk {
    let bytes = text.as_bytes();
    let mut p = from;
    let mut empty = true;
    let mut lines = 0;
    let mut bad = None;
    while p < bytes.len() {
        let (line_end, line_bad) = scan_line(bytes, p);
        let next = (line_end + 1).min(bytes.len());
        if bytes.get(p..p + 3) == Some(b"---") {
            let mut line = text.get(p + 3..line_end).unwrap_or("");
            // bufio.ReadLine drops the CR of a CR LF.
            if line_end < bytes.len() {
                line = line.strip_suffix('\r').unwrap_or(line);
            }
            let trimmed = line.trim_matches(is_go_space);
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                return Chunk::BadSeparator {
                    at: p,
                    lines,
                    rest: trimmed.to_owned(),
                };
            }
            if !empty {
                return Chunk::Doc {
                    start: from,
                    end: p,
                    next,
                    lines: lines + usize::from(line_end < bytes.len()),
                    bad,
                };
            }
        }
        empty = false;
        bad = bad.or(line_bad);
        if line_end < bytes.len() {
            lines += 1;
        }
        p = next;
    }
    if empty {
        Chunk::End
    } else {
        Chunk::Doc {
            start: from,
            end: bytes.len(),
            next: bytes.len(),
            lines,
            bad,
        }
    }
}

/// The error for a character go-yaml refuses at byte `at` of `text` (a chunk starting at
/// `origin`).
pub(crate) fn refused_char_error(text: &str, at: usize, origin: Origin) -> Error {
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count());
    Error::at(
        origin.pos(line, column),
        "control characters are not allowed",
    )
}

/// go-yaml's check of the characters of a document (see the module docs).
#[cfg(test)]
pub(crate) fn check_chars(text: &str, origin: Origin) -> Result<(), Error> {
    let bytes = text.as_bytes();
    let mut p = 0;
    while p < bytes.len() {
        let (end, bad) = scan_line(bytes, p);
        if let Some(at) = bad {
            return Err(refused_char_error(text, at, origin));
        }
        p = end + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boms_and_encodings() {
        assert_eq!(decode_text(b"\xef\xbb\xbfa: 1\n"), "a: 1\n");
        assert_eq!(decode_text(b"\xff\xfea\x00:\x00 \x001\x00\n\x00"), "a: 1\n");
        assert_eq!(decode_text(b"\xfe\xff\x00a\x00:\x00 \x001\x00\n"), "a: 1\n");
        assert_eq!(decode_text(b"a: \xff\n"), "a: \u{FFFD}\n");
        assert_eq!(decode_text(b"a: caf\xe9\n"), "a: caf\u{FFFD}\n");
        assert!(matches!(decode_text(b"a: 1\n"), Cow::Borrowed(_)));
        // A lone surrogate and an odd final byte.
        assert_eq!(decode_text(b"\xff\xfe\x00\xd8a\x00b"), "\u{FFFD}a\u{FFFD}");
    }

    #[test]
    fn json_sniffing() {
        assert!(looks_like_json("  \n {\"a\": 1}"));
        assert!(!looks_like_json("a: {}"));
        assert!(!looks_like_json("[1]"));
        assert!(!looks_like_json(""));
        assert!(looks_like_json("\u{a0}{"));
        let far = format!("{}{{}}", " ".repeat(4096));
        assert!(!looks_like_json(&far));
    }

    fn chunks(text: &str) -> Result<Vec<&str>, String> {
        let mut out = Vec::new();
        let mut p = 0;
        loop {
            match next_chunk(text, p) {
                Chunk::Doc {
                    start, end, next, ..
                } => {
                    out.push(&text[start..end]);
                    p = next;
                }
                Chunk::BadSeparator { rest, .. } => return Err(rest),
                Chunk::End => return Ok(out),
            }
        }
    }

    #[test]
    fn chunks_count_lines_and_find_refused_characters() {
        let t = "a: 1\n---\nb: \u{7}\n";
        assert_eq!(
            next_chunk(t, 0),
            Chunk::Doc {
                start: 0,
                end: 5,
                next: 9,
                lines: 2,
                bad: None
            }
        );
        assert_eq!(
            next_chunk(t, 9),
            Chunk::Doc {
                start: 9,
                end: 14,
                next: 14,
                lines: 1,
                bad: Some(12)
            }
        );
        // A dropped separator line does not count.
        assert!(matches!(
            next_chunk("a\n--- #\u{1}\n", 0),
            Chunk::Doc { bad: None, .. }
        ));
    }

    #[test]
    fn splitting_like_kubectl() {
        assert_eq!(chunks("a: 1\n---\nb: 2\n"), Ok(vec!["a: 1\n", "b: 2\n"]));
        assert_eq!(chunks("---\na: 1\n"), Ok(vec!["---\na: 1\n"]));
        assert_eq!(
            chunks("a: 1\n--- # c\n--- \nb: 2"),
            Ok(vec!["a: 1\n", "--- \nb: 2"])
        );
        assert_eq!(
            chunks("a: 1\r\n---\r\nb: 2\r\n"),
            Ok(vec!["a: 1\r\n", "b: 2\r\n"])
        );
        assert_eq!(chunks("a: |\n  ---\n"), Ok(vec!["a: |\n  ---\n"]));
        assert_eq!(chunks("--- {a: 1}\n"), Err("{a: 1}".to_owned()));
        assert_eq!(chunks("a: 1\n----\n"), Err("-".to_owned()));
        assert_eq!(chunks("---a\n"), Err("a".to_owned()));
        assert_eq!(chunks(""), Ok(vec![]));
        assert_eq!(chunks("a: 1\n..."), Ok(vec!["a: 1\n..."]));
    }

    #[test]
    fn control_characters() {
        assert!(check_chars("a: b\tc\r\n\u{85}\u{a0}\u{feff}\u{10000}", Origin::START).is_ok());
        for bad in [
            "a\u{1}", "\u{7f}", "x\u{80}", "\u{9f}", "\u{fffe}", "\u{ffff}", "\0",
        ] {
            assert!(check_chars(bad, Origin::START).is_err(), "{bad:?}");
        }
        let e = check_chars("a: 1\nb: x\u{1}", Origin::START).err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((Some(2), Some(5))));
        let long = format!("{}\u{1}{}", "x".repeat(21), "y".repeat(30));
        assert!(check_chars(&long, Origin::START).is_err());
        assert!(check_chars(&"é abc\t\r\n".repeat(9), Origin::START).is_ok());
    }
}
