//! The stream layer: [`documents`] splits a text into documents the way `kubectl -f` does
//! (apimachinery's `YAMLOrJSONDecoder`), and [`Document::read`] reads one as YAMLToJSON does.
//!
//! * A text whose first non-space character (within 4096 bytes) is `{` is read as a stream of
//!   JSON values first. If the first or second value is not valid JSON, reading falls back to
//!   YAML from the end of the last good value (after its line's trailing whitespace), and if
//!   that first YAML document fails too, the JSON error is the one reported, as kubectl does.
//!   After two good JSON values a bad one is an error.
//! * Otherwise the text is cut at `---` lines (`text.rs`) and each chunk is read by go-yaml's
//!   rules: only its first YAML document counts (`...` ends it and the rest of the chunk is
//!   ignored, as are directives, which always fail in kubectl because a `---` after them
//!   starts a new chunk), and anything after the root node is ignored as long as the scanner
//!   can read the next token.
//! * A document whose value is null (empty, only comments, `~`) reads as `None`: kubectl skips
//!   it.
//! * kubectl stops at the first bad document. [`Documents`] ends after yielding an error; a
//!   [`Document::read`] error is the caller's to stop on (and any `items` already handed to
//!   its callback belong to a document that kubectl would refuse as a whole).
//!
//! Anchors never cross documents. Line and column numbers in errors count from the start of
//! the whole text (kubectl's count from the start of each chunk).

use super::compose::Composer;
use super::error::{Error, Origin};
use super::json;
use super::node::Node;
use super::parser::{Parser, Sink, Step};
use super::scanner::Scanner;
use super::scanner::{Mark, ScalarStyle};
use super::text::{is_go_space, looks_like_json, next_chunk, refused_char_error, Chunk};
use std::borrow::Cow;

/// The documents of a YAML (or JSON) stream as `kubectl -f` splits it; see the module docs.
pub fn documents(text: &str) -> Documents<'_> {
    Documents {
        text,
        pos: 0,
        counted: 0,
        line: 1,
        line_start: 0,
        json: looks_like_json(text),
        json_values: 0,
        fallback_error: None,
        done: false,
    }
}

/// Iterator over the documents of a text; see [`documents`].
#[derive(Debug, Clone)]
pub struct Documents<'a> {
    text: &'a str,
    pos: usize,
    /// Lines are counted up to here.
    counted: usize,
    line: usize,
    line_start: usize,
    /// Still reading a JSON stream.
    json: bool,
    json_values: usize,
    /// The JSON error to report if the first YAML document after a fallback fails.
    fallback_error: Option<Error>,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Yaml,
    Json,
}

/// One document, not yet read.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    text: &'a str,
    origin: Origin,
    kind: Kind,
    fallback_error: Option<Error>,
    /// Byte offset of the first character go-yaml refuses, found while splitting.
    refused: Option<usize>,
}

impl<'a> Documents<'a> {
    /// The position of byte `at` (at or after any position asked before).
    fn origin(&mut self, at: usize) -> Origin {
        if at > self.counted {
            let seg = self.text.get(self.counted..at).unwrap_or("");
            let bytes = seg.as_bytes();
            let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
            if newlines > 0 {
                self.line += newlines;
                let last = bytes.iter().rposition(|&b| b == b'\n').unwrap_or(0);
                self.line_start = self.counted + last + 1;
            }
            self.counted = at;
        }
        let column = self
            .text
            .get(self.line_start..at)
            .map_or(0, |s| s.chars().count());
        Origin {
            line: self.line,
            column,
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<Document<'a>, Error>> {
        self.done = true;
        Some(Err(e))
    }

    fn next_json(&mut self) -> Option<Result<Document<'a>, Error>> {
        let bytes = self.text.as_bytes();
        let rewind = self.pos;
        let start = json::skip_ws(bytes, self.pos);
        if start >= bytes.len() {
            self.done = true;
            return None;
        }
        match json::value_end(self.text, start) {
            Ok(end) => {
                self.json_values += 1;
                self.pos = end;
                let origin = self.origin(start);
                Some(Ok(Document {
                    text: self.text.get(start..end).unwrap_or(""),
                    origin,
                    kind: Kind::Json,
                    fallback_error: None,
                    refused: None,
                }))
            }
            Err(je) => {
                let origin = self.origin(je.offset.min(bytes.len()));
                let e = Error::at(origin.pos(0, 0), format!("json: {}", je.message));
                if self.json_values > 1 {
                    return self.fail(e);
                }
                // Fall back to YAML after the last good value: its whitespace up to and
                // including the first line break is dropped. apimachinery reads four bytes at
                // a time for that and gives up (reporting the JSON error) when fewer remain.
                self.json = false;
                let rest = self.text.get(rewind..).unwrap_or("");
                let mut stop = None;
                for (i, c) in rest.char_indices() {
                    if rewind + i + 4 > bytes.len() {
                        break;
                    }
                    if !is_go_space(c) {
                        stop = Some(rewind + i);
                        break;
                    }
                    if c == '\n' {
                        stop = Some(rewind + i + 1);
                        break;
                    }
                }
                let Some(p) = stop else {
                    return self.fail(e);
                };
                self.pos = p;
                self.fallback_error = Some(e);
                self.next_yaml()
            }
        }
    }

    fn next_yaml(&mut self) -> Option<Result<Document<'a>, Error>> {
        match next_chunk(self.text, self.pos) {
            Chunk::End => {
                self.done = true;
                None
            }
            Chunk::BadSeparator { at, rest, .. } => {
                let origin = self.origin(at);
                let e = Error::at(
                    origin.pos(0, 0),
                    format!("invalid Yaml document separator: {rest}"),
                );
                let e = self.fallback_error.take().unwrap_or(e);
                self.fail(e)
            }
            Chunk::Doc {
                start,
                end,
                next,
                lines,
                bad,
            } => {
                self.pos = next;
                let origin = self.origin(start);
                // The chunk's lines are counted already.
                self.line += lines;
                self.counted = next;
                if lines > 0 {
                    self.line_start = next;
                }
                Some(Ok(Document {
                    text: self.text.get(start..end).unwrap_or(""),
                    origin,
                    kind: Kind::Yaml,
                    fallback_error: self.fallback_error.take(),
                    refused: bad.map(|b| b - start),
                }))
            }
        }
    }
}

impl<'a> Iterator for Documents<'a> {
    type Item = Result<Document<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.json {
            self.next_json()
        } else {
            self.next_yaml()
        }
    }
}

impl std::iter::FusedIterator for Documents<'_> {}

impl<'a> Document<'a> {
    /// 1-based line of the document's start in the whole text.
    pub fn line(&self) -> usize {
        self.origin.line
    }

    /// The document's text: its chunk of the YAML stream (separator line excluded, unless it
    /// starts the chunk), or the JSON value.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Whether the document is a value of a JSON stream.
    pub fn is_json(&self) -> bool {
        self.kind == Kind::Json
    }

    /// Reads the whole document into a [`Node`]; `None` for a document whose value is null
    /// (empty, only comments, `~`), which kubectl skips.
    ///
    /// The elements of the `items` sequence of a top-level mapping (a `kind: List`, whether
    /// `items` comes before or after `kind`) are not kept in the returned node: each is handed
    /// to `on_item` as soon as it is read, and the node holds `items: []` in its place. So a
    /// list of 100,000 items is never held whole. If `items` is not a sequence, it is kept
    /// normally. If a later entry of the top-level mapping sets `items` again after elements
    /// were handed over (a duplicate key, which YAMLToJSON resolves as "last wins"), the read
    /// fails rather than leave the caller with the wrong elements; a duplicate `items` before
    /// any element was handed over simply wins as usual.
    ///
    /// On error, elements already handed over belong to a document kubectl refuses whole.
    pub fn read(self, mut on_item: impl FnMut(Node<'a>)) -> Result<Option<Node<'a>>, Error> {
        let fallback = self.fallback_error.clone();
        let result = match self.kind {
            Kind::Json => read_json(self.text, self.origin, &mut on_item),
            Kind::Yaml => match self.refused {
                Some(at) => Err(refused_char_error(self.text, at, self.origin)),
                None => read_yaml(self.text, self.origin, &mut on_item),
            },
        };
        match (result, fallback) {
            (Err(_), Some(json_error)) => Err(json_error),
            (r, _) => r,
        }
    }
}

fn read_json<'a>(
    text: &'a str,
    origin: Origin,
    on_item: &mut dyn FnMut(Node<'a>),
) -> Result<Option<Node<'a>>, Error> {
    let mut composer = Composer::new(on_item, text.len());
    json::read(text, origin, &mut composer)?;
    composer.finish()
}

/// Reads the first YAML document of a chunk, as go-yaml's `Unmarshal` does. The chunk's
/// characters were checked while splitting.
pub(crate) fn read_yaml<'a>(
    text: &'a str,
    origin: Origin,
    on_item: &mut dyn FnMut(Node<'a>),
) -> Result<Option<Node<'a>>, Error> {
    // go-yaml's reader drops a BOM at the start of its input (here: of each chunk).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() >= u32::MAX as usize - 16 {
        return Err(Error::at(
            origin.pos(0, 0),
            "document too large (4 GiB or more)",
        ));
    }
    let mut parser = Parser::new(Scanner::new(text, origin));
    let mut composer = Composer::new(on_item, text.len());
    let mut sink = ComposeSink {
        composer: &mut composer,
        origin,
    };
    if parser.step(&mut sink)? != Step::StreamStart {
        return Err(Error::msg("internal error: no stream start"));
    }
    match parser.step(&mut sink)? {
        Step::StreamEnd => return Ok(None),
        Step::DocumentStart => {}
        _ => return Err(Error::msg("internal error: no document start")),
    }
    while !sink.composer.root_done() {
        if parser.step(&mut sink)? != Step::Node {
            return Err(Error::msg("internal error: unexpected event"));
        }
    }
    // go-yaml reads the document's end too, which scans the token after the root node.
    if parser.step(&mut sink)? != Step::DocumentEnd {
        return Err(Error::msg("internal error: no document end"));
    }
    composer.finish()
}

/// The parser's events, to the composer (with positions made absolute).
struct ComposeSink<'a, 'c, 'f> {
    composer: &'c mut Composer<'a, 'f>,
    origin: Origin,
}

impl<'a> Sink<'a> for ComposeSink<'a, '_, '_> {
    #[inline]
    fn scalar(
        &mut self,
        value: Cow<'a, str>,
        _style: ScalarStyle,
        anchor: Option<&'a str>,
        tag: Option<Cow<'a, str>>,
        plain_implicit: bool,
        mark: Mark,
    ) -> Result<(), Error> {
        let pos = self.origin.pos(mark.line as usize, mark.column as usize);
        self.composer
            .yaml_scalar(value, tag.as_deref(), plain_implicit, anchor, pos)
    }

    #[inline]
    fn alias(&mut self, name: &'a str, mark: Mark) -> Result<(), Error> {
        let pos = self.origin.pos(mark.line as usize, mark.column as usize);
        self.composer.alias(name, pos)
    }

    #[inline]
    fn start(&mut self, map: bool, anchor: Option<&'a str>, mark: Mark) -> Result<(), Error> {
        let pos = self.origin.pos(mark.line as usize, mark.column as usize);
        self.composer.start(map, anchor, pos)
    }

    #[inline]
    fn end(&mut self, mark: Mark) -> Result<(), Error> {
        let pos = self.origin.pos(mark.line as usize, mark.column as usize);
        self.composer.end(pos)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::documents;
    use crate::yaml::testutil::read;

    #[test]
    fn yaml_streams_split_like_kubectl() {
        assert_eq!(
            read("a: 1\n---\nb: 2\n").unwrap(),
            vec![json!({"a": 1}), json!({"b": 2})]
        );
        assert_eq!(
            read("---\n# only a comment\n---\n~\n---\nc: 3").unwrap(),
            vec![json!({"c": 3})]
        );
        // `...` ends the document; the rest of the chunk is ignored.
        assert_eq!(read("a: 1\n...\nb: 2\n").unwrap(), vec![json!({"a": 1})]);
        // Content after the root node is ignored if it scans.
        assert_eq!(read("[1] [2]\n").unwrap(), vec![json!([1])]);
        assert!(read("[1] @\n").is_err());
        for bad in [
            "--- {a: 1}\n",
            "a: 1\n----\n",
            "---a\n",
            "%YAML 1.1\n---\na: 1\n",
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        // kubectl fails at a bad separator, dropping the document it ends; documents before
        // that one were read.
        let docs: Vec<_> = documents("a: 1\n--- x\nb: 2\n").collect();
        assert!(docs.len() == 1 && docs[0].is_err());
        let docs: Vec<_> = documents("a: 1\n---\nc: 1\n--- x\nb: 2\n").collect();
        assert!(docs.len() == 2 && docs[0].is_ok() && docs[1].is_err());
    }

    #[test]
    fn lines_are_counted_from_the_start_of_the_text() {
        let lines: Vec<usize> = documents("a: 1\n---\nb: 2\n\n---\nc: 3\n")
            .map(|d| d.unwrap().line())
            .collect();
        assert_eq!(lines, vec![1, 3, 6]);
        let e = read("a: 1\n---\nb: 1\nc: @x\n").err().unwrap();
        assert_eq!((e.line, e.column), (Some(4), Some(4)));
        let e = read("a: 1\n---\nb: \u{1}\n").err().unwrap();
        assert_eq!((e.line, e.column), (Some(3), Some(4)));
    }

    #[test]
    fn json_streams() {
        assert_eq!(
            read("{\"a\": 1}\n{\"b\": 2}").unwrap(),
            vec![json!({"a": 1}), json!({"b": 2})]
        );
        // JSON numbers stay as JSON reads them: 1e3 is a float there.
        assert_eq!(
            read("{\"a\": 1e3, \"b\": 10}").unwrap(),
            vec![json!({"a": 1000.0, "b": 10})]
        );
        assert_eq!(
            read("{\"a\": \"\\/\\ud83d\\ude00\\ud800\"}").unwrap(),
            vec![json!({"a": "/😀\u{FFFD}"})]
        );
        // One JSON object then YAML.
        assert_eq!(
            read("{\"a\": 1}\n---\nb: 2\n").unwrap(),
            vec![json!({"a": 1}), json!({"b": 2})]
        );
        // Not JSON after all: read as YAML.
        assert_eq!(
            read("{a: 1}\n---\nb: 2\n").unwrap(),
            vec![json!({"a": 1}), json!({"b": 2})]
        );
        // After two JSON values, a bad one is an error.
        assert!(read("{\"a\": 1} {\"b\": 2} x").is_err());
        // Fewer than four bytes after the value: apimachinery gives up.
        assert!(read("{\"a\": 1} x").is_err());
        assert_eq!(
            read("{\"a\": 1}\nxyz").unwrap(),
            vec![json!({"a": 1}), json!("xyz")]
        );
        // A JSON list streams its items too.
        let mut n = 0;
        let doc = documents("{\"kind\": \"List\", \"items\": [1, 2, 3]}")
            .next()
            .unwrap()
            .unwrap();
        assert!(doc.is_json());
        let node = doc.read(|_| n += 1).unwrap().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            node.to_value().unwrap(),
            json!({"kind": "List", "items": []})
        );
    }
}
