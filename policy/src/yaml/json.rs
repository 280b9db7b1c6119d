//! JSON documents, as kubectl reads a stream that starts with `{`.
//!
//! apimachinery's `YAMLOrJSONDecoder` decodes such a stream with Go's `encoding/json`, one value
//! after another (`{..}{..}` or `{..}\n{..}`), and passes each value on as it is written, so the
//! API server reads `1e3` as a float and duplicate keys keep the last. This module checks one
//! value with `encoding/json`'s grammar ([`value_end`], used to find where the next value
//! starts and whether to fall back to YAML) and turns a checked value into composer calls
//! ([`read`]), so a JSON `kind: List` streams its items like a YAML one.
//!
//! Numbers become what `serde_json` reads from their text; strings are unescaped with Go's
//! rules (an unpaired `\uD800` becomes U+FFFD rather than an error).

use std::borrow::Cow;

use super::compose::{Composer, JsonScalar};
use super::error::{Error, Origin, Pos};
use super::scanner::MAX_DEPTH;

/// Why a JSON value is not valid, at a byte offset of the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub offset: usize,
    pub message: String,
}

pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

pub(crate) fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Receives a JSON value's parts.
trait Sink<'a> {
    fn scalar(&mut self, s: JsonScalar<'a>, at: usize) -> Result<(), JsonError>;
    fn start(&mut self, map: bool, at: usize) -> Result<(), JsonError>;
    fn end(&mut self, at: usize) -> Result<(), JsonError>;
    /// Whether scalars are wanted (the checking pass skips building them).
    const BUILD: bool;
}

struct Check;

impl<'a> Sink<'a> for Check {
    const BUILD: bool = false;
    fn scalar(&mut self, _: JsonScalar<'a>, _: usize) -> Result<(), JsonError> {
        Ok(())
    }
    fn start(&mut self, _: bool, _: usize) -> Result<(), JsonError> {
        Ok(())
    }
    fn end(&mut self, _: usize) -> Result<(), JsonError> {
        Ok(())
    }
}

/// Checks the JSON value starting at byte `start` (no leading whitespace) and returns the
/// offset just past it.
pub(crate) fn value_end(text: &str, start: usize) -> Result<usize, JsonError> {
    Reader {
        text,
        bytes: text.as_bytes(),
        i: start,
    }
    .value(&mut Check)
}

/// Feeds an already checked JSON value (the whole of `text`) to the composer.
pub(crate) fn read<'a>(
    text: &'a str,
    origin: Origin,
    composer: &mut Composer<'a, '_>,
) -> Result<(), Error> {
    let mut sink = Build {
        composer,
        cursor: Cursor {
            text,
            origin,
            at: 0,
            line: 0,
            column: 0,
        },
        error: None,
    };
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        i: 0,
    };
    match reader.value(&mut sink) {
        Ok(_) => Ok(()),
        Err(e) => Err(match sink.error.take() {
            Some(err) => err,
            None => {
                let pos = sink.cursor.pos(e.offset);
                Error::at(pos, e.message)
            }
        }),
    }
}

/// Turns byte offsets (increasing) into positions, counting lines and characters once.
struct Cursor<'a> {
    text: &'a str,
    origin: Origin,
    at: usize,
    line: usize,
    column: usize,
}

impl Cursor<'_> {
    fn pos(&mut self, to: usize) -> Pos {
        if to >= self.at {
            let seg = self.text.get(self.at..to).unwrap_or("");
            for c in seg.chars() {
                if c == '\n' {
                    self.line += 1;
                    self.column = 0;
                } else {
                    self.column += 1;
                }
            }
            self.at = to;
        }
        self.origin.pos(self.line, self.column)
    }
}

struct Build<'a, 'c, 'f> {
    composer: &'c mut Composer<'a, 'f>,
    cursor: Cursor<'a>,
    /// A composer error (depth, items rules...), passed through unchanged.
    error: Option<Error>,
}

impl<'a> Build<'a, '_, '_> {
    fn fail(&mut self, e: Error, at: usize) -> JsonError {
        self.error = Some(e);
        JsonError {
            offset: at,
            message: String::new(),
        }
    }
}

impl<'a> Sink<'a> for Build<'a, '_, '_> {
    const BUILD: bool = true;
    fn scalar(&mut self, s: JsonScalar<'a>, at: usize) -> Result<(), JsonError> {
        let pos = self.cursor.pos(at);
        self.composer
            .json_scalar(s, pos)
            .map_err(|e| self.fail(e, at))
    }
    fn start(&mut self, map: bool, at: usize) -> Result<(), JsonError> {
        let pos = self.cursor.pos(at);
        self.composer
            .start(map, None, pos)
            .map_err(|e| self.fail(e, at))
    }
    fn end(&mut self, at: usize) -> Result<(), JsonError> {
        let pos = self.cursor.pos(at);
        self.composer.end(pos).map_err(|e| self.fail(e, at))
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
}

/// What the reader expects next inside a container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Array,
    Object,
}

impl<'a> Reader<'a> {
    fn err(&self, at: usize, what: &str) -> JsonError {
        let message = match self.bytes.get(at) {
            None => "unexpected end of JSON input".to_owned(),
            Some(_) => {
                let c = self
                    .text
                    .get(at..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?');
                format!("invalid character {c:?} {what}")
            }
        };
        JsonError {
            offset: at,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    /// One value, iteratively (containers on an explicit stack).
    fn value<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<usize, JsonError> {
        let mut stack: Vec<Open> = Vec::new();
        // Whether a value is expected (true) or a separator/closer (false).
        let mut want_value = true;
        loop {
            if want_value {
                self.i = skip_ws(self.bytes, self.i);
                let at = self.i;
                match self.peek() {
                    Some(b'{') => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(JsonError {
                                offset: at,
                                message: format!("exceeded max depth of {MAX_DEPTH}"),
                            });
                        }
                        sink.start(true, at)?;
                        self.i += 1;
                        self.i = skip_ws(self.bytes, self.i);
                        if self.peek() == Some(b'}') {
                            sink.end(self.i)?;
                            self.i += 1;
                            want_value = false;
                        } else {
                            stack.push(Open::Object);
                            self.key(sink)?;
                        }
                        if want_value {
                            continue;
                        }
                    }
                    Some(b'[') => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(JsonError {
                                offset: at,
                                message: format!("exceeded max depth of {MAX_DEPTH}"),
                            });
                        }
                        sink.start(false, at)?;
                        self.i += 1;
                        self.i = skip_ws(self.bytes, self.i);
                        if self.peek() == Some(b']') {
                            sink.end(self.i)?;
                            self.i += 1;
                            want_value = false;
                        } else {
                            stack.push(Open::Array);
                            continue;
                        }
                    }
                    _ => {
                        self.scalar(sink)?;
                        want_value = false;
                    }
                }
            }
            // After a value.
            let Some(&top) = stack.last() else {
                return Ok(self.i);
            };
            self.i = skip_ws(self.bytes, self.i);
            let at = self.i;
            match (top, self.peek()) {
                (Open::Array, Some(b',')) => {
                    self.i += 1;
                    want_value = true;
                }
                (Open::Array, Some(b']')) | (Open::Object, Some(b'}')) => {
                    sink.end(at)?;
                    self.i += 1;
                    stack.pop();
                }
                (Open::Object, Some(b',')) => {
                    self.i += 1;
                    self.i = skip_ws(self.bytes, self.i);
                    self.key(sink)?;
                    want_value = true;
                }
                (Open::Array, _) => {
                    return Err(self.err(at, "after array element"));
                }
                (Open::Object, _) => {
                    return Err(self.err(at, "after object key:value pair"));
                }
            }
        }
    }

    /// A key and its colon.
    fn key<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<(), JsonError> {
        let at = self.i;
        if self.peek() != Some(b'"') {
            return Err(self.err(at, "looking for beginning of object key string"));
        }
        let s = self.string::<S>()?;
        sink.scalar(JsonScalar::Str(s), at)?;
        self.i = skip_ws(self.bytes, self.i);
        if self.peek() != Some(b':') {
            return Err(self.err(self.i, "after object key"));
        }
        self.i += 1;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        for (k, &w) in word.iter().enumerate() {
            if self.bytes.get(self.i + k) != Some(&w) {
                return Err(self.err(self.i + k, "in literal"));
            }
        }
        self.i += word.len();
        Ok(())
    }

    fn scalar<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<(), JsonError> {
        let at = self.i;
        let s = match self.peek() {
            Some(b'"') => JsonScalar::Str(self.string::<S>()?),
            Some(b't') => {
                self.literal(b"true")?;
                JsonScalar::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                JsonScalar::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                JsonScalar::Null
            }
            Some(b'-' | b'0'..=b'9') => self.number::<S>()?,
            _ => return Err(self.err(at, "looking for beginning of value")),
        };
        sink.scalar(s, at)
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - from
    }

    fn number<S: Sink<'a>>(&mut self) -> Result<JsonScalar<'a>, JsonError> {
        let from = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err(self.i, "in numeric literal")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err(self.i, "after decimal point in numeric literal"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err(self.i, "in exponent of numeric literal"));
            }
        }
        if !S::BUILD {
            return Ok(JsonScalar::Null);
        }
        let tok = self.text.get(from..self.i).unwrap_or("0");
        if integer && tok != "-0" {
            if let Ok(u) = tok.parse::<u64>() {
                return Ok(match i64::try_from(u) {
                    Ok(i) => JsonScalar::Int(i),
                    Err(_) => JsonScalar::UInt(u),
                });
            }
            if let Ok(i) = tok.parse::<i64>() {
                return Ok(JsonScalar::Int(i));
            }
        }
        // Big integers, fractions, exponents, -0: what serde_json reads from the text.
        let n: serde_json::Number = serde_json::from_str(tok).map_err(|e| JsonError {
            offset: from,
            message: e.to_string(),
        })?;
        Ok(if let Some(i) = n.as_i64() {
            JsonScalar::Int(i)
        } else if let Some(u) = n.as_u64() {
            JsonScalar::UInt(u)
        } else {
            JsonScalar::Float(n.as_f64().unwrap_or(0.0))
        })
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0u32;
        for k in 0..4 {
            let d = (*self.bytes.get(at + k)? as char).to_digit(16)?;
            v = (v << 4) | d;
        }
        Some(v)
    }

    /// A string starting at its opening quote.
    fn string<S: Sink<'a>>(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.i += 1;
        let start = self.i;
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            let at = self.i;
            match self.peek() {
                None => return Err(self.err(at, "in string literal")),
                Some(b'"') => {
                    let tail = self.text.get(run..at).unwrap_or("");
                    self.i += 1;
                    return Ok(match owned {
                        Some(mut s) => {
                            s.push_str(tail);
                            Cow::Owned(s)
                        }
                        None => Cow::Borrowed(self.text.get(start..at).unwrap_or("")),
                    });
                }
                Some(b'\\') => {
                    let s = owned.get_or_insert_with(String::new);
                    if S::BUILD {
                        s.push_str(self.text.get(run..at).unwrap_or(""));
                    }
                    let c = match self.bytes.get(at + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\x08',
                        Some(b'f') => '\x0C',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let Some(u) = self.hex4(at + 2) else {
                                return Err(self.err(at + 2, "in \\u hexadecimal character escape"));
                            };
                            self.i = at + 6;
                            let c = if (0xD800..0xDC00).contains(&u) {
                                // A pair, or U+FFFD (Go's rule) with the next escape left alone.
                                let low = (self.bytes.get(self.i) == Some(&b'\\')
                                    && self.bytes.get(self.i + 1) == Some(&b'u'))
                                .then(|| self.hex4(self.i + 2))
                                .flatten()
                                .filter(|l| (0xDC00..0xE000).contains(l));
                                match low {
                                    Some(l) => {
                                        self.i += 6;
                                        char::from_u32(
                                            0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00),
                                        )
                                        .unwrap_or('\u{FFFD}')
                                    }
                                    None => '\u{FFFD}',
                                }
                            } else {
                                char::from_u32(u).unwrap_or('\u{FFFD}')
                            };
                            if S::BUILD {
                                s.push(c);
                            }
                            run = self.i;
                            continue;
                        }
                        _ => return Err(self.err(at + 1, "in string escape code")),
                    };
                    if S::BUILD {
                        s.push(c);
                    }
                    self.i = at + 2;
                    run = self.i;
                }
                Some(b) if b < 0x20 => return Err(self.err(at, "in string literal")),
                Some(_) => {
                    // A run of plain characters.
                    let rest = self.bytes.get(at..).unwrap_or(&[]);
                    let n = rest
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                        .unwrap_or(rest.len());
                    self.i = at + n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_value_ends() {
        let t = r#"{"a": [1, 2.5e3, "x\"y"], "b": null} {"c": true}"#;
        let end = value_end(t, 0);
        assert_eq!(end, Ok(36));
        assert_eq!(value_end(t, 37), Ok(t.len()));
        assert_eq!(value_end("[1,2]x", 0), Ok(5));
    }

    #[test]
    fn refuses_what_encoding_json_refuses() {
        for bad in [
            "{a: 1}",
            "{\"a\" 1}",
            "[1,]",
            "[01]",
            "[1.]",
            "[.5]",
            "[+1]",
            "\"\\x\"",
            "\"a\nb\"",
            "[tru]",
            "{\"a\":1,}",
            "[1 2]",
            "{",
            "\"abc",
        ] {
            assert!(value_end(bad, 0).is_err(), "{bad}");
        }
        assert!(value_end("\"\\/\"", 0).is_ok());
    }
}
