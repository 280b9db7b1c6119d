//! The parser: tokens to events (libyaml's grammar, as go-yaml v2.4 has it).
//!
//! A state machine with an explicit stack, so nesting costs heap, not call stack. It produces
//! the events of the stream one at a time; [`compose`](super::compose) pulls them. The grammar
//! is libyaml's (block and flow collections, indentless sequences as mapping values, the
//! `? key` form, empty nodes) with go-yaml's rules for directives: `%YAML` other than 1.1 is
//! "found incompatible YAML document", `%TAG` handles are per document, and the default handles
//! `!` and `!!` (`tag:yaml.org,2002:`).
//!
//! Tags are resolved to their full form here (`!!int` becomes `tag:yaml.org,2002:int`); what a
//! tag *means* is decided in `resolve.rs`.

use std::borrow::Cow;

use super::error::Error;
use super::scanner::{Mark, ScalarStyle, Scanner, Token, TokenKind};

/// What a parsing step produced: a stream or document boundary, or a node event (which went
/// to the [`Sink`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Node,
}

/// Receives the node events of the parser (the composer, or a test's recorder). Events go
/// straight to it rather than through an event value, which keeps them in registers.
pub(crate) trait Sink<'a> {
    /// A scalar. `plain_implicit` is go-yaml's `implicit`: an untagged plain scalar, or one
    /// tagged `!`; only these are resolved (`yes` is true), quoted untagged ones are strings.
    fn scalar(
        &mut self,
        value: Cow<'a, str>,
        style: ScalarStyle,
        anchor: Option<&'a str>,
        tag: Option<Cow<'a, str>>,
        plain_implicit: bool,
        mark: Mark,
    ) -> Result<(), Error>;
    fn alias(&mut self, name: &'a str, mark: Mark) -> Result<(), Error>;
    /// The start of a sequence (`map == false`) or mapping.
    fn start(&mut self, map: bool, anchor: Option<&'a str>, mark: Mark) -> Result<(), Error>;
    /// The end of the innermost sequence or mapping.
    fn end(&mut self, mark: Mark) -> Result<(), Error>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    StreamStart,
    ImplicitDocumentStart,
    DocumentStart,
    DocumentContent,
    DocumentEnd,
    BlockNode,
    BlockSequenceFirstEntry,
    BlockSequenceEntry,
    IndentlessSequenceEntry,
    BlockMappingFirstKey,
    BlockMappingKey,
    BlockMappingValue,
    FlowSequenceFirstEntry,
    FlowSequenceEntry,
    FlowSequenceEntryMappingKey,
    FlowSequenceEntryMappingValue,
    FlowSequenceEntryMappingEnd,
    FlowMappingFirstKey,
    FlowMappingKey,
    FlowMappingValue,
    FlowMappingEmptyValue,
    End,
}

const DEFAULT_TAG_PREFIX: &str = "tag:yaml.org,2002:";

pub(crate) struct Parser<'a> {
    scanner: Scanner<'a>,
    state: State,
    states: Vec<State>,
    marks: Vec<Mark>,
    /// `%TAG` handles of the current document (the defaults are handled in `resolve_tag`).
    tag_directives: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The VALUE of a fused `KeyScalar` token (its `:` mark), not yet handled.
    pending_value: Option<Mark>,
}

/// A cheap copy of what the parser needs to know about the next token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    StreamStart,
    StreamEnd,
    VersionDirective,
    TagDirective,
    DocumentStart,
    DocumentEnd,
    BlockSequenceStart,
    BlockMappingStart,
    BlockEnd,
    FlowSequenceStart,
    FlowSequenceEnd,
    FlowMappingStart,
    FlowMappingEnd,
    BlockEntry,
    FlowEntry,
    Key,
    Value,
    Alias,
    Anchor,
    Tag,
    Scalar,
}

fn kind_of(t: &Token<'_>) -> Kind {
    match t.kind {
        TokenKind::StreamStart => Kind::StreamStart,
        TokenKind::StreamEnd => Kind::StreamEnd,
        TokenKind::VersionDirective { .. } => Kind::VersionDirective,
        TokenKind::TagDirective(_) => Kind::TagDirective,
        TokenKind::DocumentStart => Kind::DocumentStart,
        TokenKind::DocumentEnd => Kind::DocumentEnd,
        TokenKind::BlockSequenceStart => Kind::BlockSequenceStart,
        TokenKind::BlockMappingStart => Kind::BlockMappingStart,
        TokenKind::BlockEnd => Kind::BlockEnd,
        TokenKind::FlowSequenceStart => Kind::FlowSequenceStart,
        TokenKind::FlowSequenceEnd => Kind::FlowSequenceEnd,
        TokenKind::FlowMappingStart => Kind::FlowMappingStart,
        TokenKind::FlowMappingEnd => Kind::FlowMappingEnd,
        TokenKind::BlockEntry => Kind::BlockEntry,
        TokenKind::FlowEntry => Kind::FlowEntry,
        TokenKind::Key => Kind::Key,
        TokenKind::Value => Kind::Value,
        TokenKind::Alias(_) => Kind::Alias,
        TokenKind::Anchor(_) => Kind::Anchor,
        TokenKind::Tag(_) => Kind::Tag,
        TokenKind::Scalar { .. } => Kind::Scalar,
        TokenKind::KeyScalar { .. } => Kind::Key,
    }
}

/// The empty plain scalar go-yaml puts where a key, value or entry is left out.
fn empty_scalar<'a, S: Sink<'a>>(sink: &mut S, mark: Mark) -> Result<Step, Error> {
    sink.scalar(
        Cow::Borrowed(""),
        ScalarStyle::Plain,
        None,
        None,
        true,
        mark,
    )?;
    Ok(Step::Node)
}

impl<'a> Parser<'a> {
    pub(crate) fn new(scanner: Scanner<'a>) -> Parser<'a> {
        Parser {
            scanner,
            state: State::StreamStart,
            states: Vec::with_capacity(16),
            marks: Vec::with_capacity(16),
            tag_directives: Vec::new(),
            pending_value: None,
        }
    }

    /// The kind of the next token. (Its mark is asked for separately: returning both through
    /// one `Result` made the compiler assemble and re-read them in a way that stalls.)
    fn peek(&mut self) -> Result<Kind, Error> {
        let t = self.scanner.peek()?;
        Ok(kind_of(t))
    }

    /// The mark of the token [`peek`](Self::peek) just returned.
    fn head_mark(&self) -> Mark {
        self.scanner.head_mark()
    }

    fn skip(&mut self) -> Result<(), Error> {
        self.scanner.skip_token()
    }

    fn pop_state(&mut self) -> State {
        self.states.pop().unwrap_or(State::End)
    }

    #[cold]
    #[inline(never)]
    fn error(&self, problem: &str, mark: Mark) -> Error {
        Error::at(self.scanner.pos_of(mark), problem)
    }

    #[cold]
    #[inline(never)]
    fn error_ctx(&self, context: &str, context_mark: Mark, problem: &str, mark: Mark) -> Error {
        let cp = self.scanner.pos_of(context_mark);
        Error::at(
            self.scanner.pos_of(mark),
            format!(
                "{problem} ({context} at line {} column {})",
                cp.line, cp.column
            ),
        )
    }

    /// The next step: node events go to `sink`. After the stream's end it keeps returning
    /// `StreamEnd`.
    pub(crate) fn step<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<Step, Error> {
        match self.state {
            State::StreamStart => self.parse_stream_start(),
            State::ImplicitDocumentStart => self.parse_document_start(true),
            State::DocumentStart => self.parse_document_start(false),
            State::DocumentContent => self.parse_document_content(sink),
            State::DocumentEnd => self.parse_document_end(),
            State::BlockNode => self.parse_node(sink, true, false),
            State::BlockSequenceFirstEntry => self.parse_block_sequence_entry(sink, true),
            State::BlockSequenceEntry => self.parse_block_sequence_entry(sink, false),
            State::IndentlessSequenceEntry => self.parse_indentless_sequence_entry(sink),
            State::BlockMappingFirstKey => self.parse_block_mapping_key(sink, true),
            State::BlockMappingKey => self.parse_block_mapping_key(sink, false),
            State::BlockMappingValue => self.parse_block_mapping_value(sink),
            State::FlowSequenceFirstEntry => self.parse_flow_sequence_entry(sink, true),
            State::FlowSequenceEntry => self.parse_flow_sequence_entry(sink, false),
            State::FlowSequenceEntryMappingKey => self.parse_flow_sequence_entry_mapping_key(sink),
            State::FlowSequenceEntryMappingValue => {
                self.parse_flow_sequence_entry_mapping_value(sink)
            }
            State::FlowSequenceEntryMappingEnd => self.parse_flow_sequence_entry_mapping_end(sink),
            State::FlowMappingFirstKey => self.parse_flow_mapping_key(sink, true),
            State::FlowMappingKey => self.parse_flow_mapping_key(sink, false),
            State::FlowMappingValue => self.parse_flow_mapping_value(sink, false),
            State::FlowMappingEmptyValue => self.parse_flow_mapping_value(sink, true),
            State::End => Ok(Step::StreamEnd),
        }
    }

    fn parse_stream_start(&mut self) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind != Kind::StreamStart {
            return Err(self.error("did not find expected <stream-start>", mark));
        }
        self.state = State::ImplicitDocumentStart;
        self.skip()?;
        Ok(Step::StreamStart)
    }

    fn parse_document_start(&mut self, implicit: bool) -> Result<Step, Error> {
        let mut kind = self.peek()?;
        if !implicit {
            while kind == Kind::DocumentEnd {
                self.skip()?;
                kind = self.peek()?;
            }
        }
        if implicit
            && !matches!(
                kind,
                Kind::VersionDirective | Kind::TagDirective | Kind::DocumentStart | Kind::StreamEnd
            )
        {
            self.process_directives()?;
            self.states.push(State::DocumentEnd);
            self.state = State::BlockNode;
            return Ok(Step::DocumentStart);
        }
        if kind != Kind::StreamEnd {
            self.process_directives()?;
            let kind = self.peek()?;
            let mark = self.head_mark();
            if kind != Kind::DocumentStart {
                return Err(self.error("did not find expected <document start>", mark));
            }
            self.states.push(State::DocumentEnd);
            self.state = State::DocumentContent;
            self.skip()?;
            return Ok(Step::DocumentStart);
        }
        self.state = State::End;
        self.skip()?;
        Ok(Step::StreamEnd)
    }

    fn parse_document_content<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if matches!(
            kind,
            Kind::VersionDirective
                | Kind::TagDirective
                | Kind::DocumentStart
                | Kind::DocumentEnd
                | Kind::StreamEnd
        ) {
            self.state = self.pop_state();
            return empty_scalar(sink, mark);
        }
        self.parse_node(sink, true, false)
    }

    fn parse_document_end(&mut self) -> Result<Step, Error> {
        let kind = self.peek()?;
        if kind == Kind::DocumentEnd {
            self.skip()?;
        }
        self.tag_directives.clear();
        self.state = State::DocumentStart;
        Ok(Step::DocumentEnd)
    }

    #[inline(never)]
    fn process_directives(&mut self) -> Result<(), Error> {
        let mut seen_version = false;
        loop {
            let kind = self.peek()?;
            let mark = self.head_mark();
            match kind {
                Kind::VersionDirective => {
                    if seen_version {
                        return Err(self.error("found duplicate %YAML directive", mark));
                    }
                    let t = self.scanner.take()?;
                    if let TokenKind::VersionDirective { major, minor } = t.kind {
                        if major != 1 || minor != 1 {
                            return Err(self.error("found incompatible YAML document", mark));
                        }
                    }
                    seen_version = true;
                }
                Kind::TagDirective => {
                    let t = self.scanner.take()?;
                    if let TokenKind::TagDirective(b) = t.kind {
                        let (handle, prefix) = *b;
                        if self.tag_directives.iter().any(|(h, _)| *h == handle) {
                            return Err(self.error("found duplicate %TAG directive", mark));
                        }
                        self.tag_directives.push((handle, prefix));
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The full tag of a `handle` + `suffix`, as the document's `%TAG`s and the defaults say.
    #[inline(never)]
    fn resolve_tag(
        &self,
        handle: Cow<'a, str>,
        suffix: Cow<'a, str>,
        start: Mark,
        tag_mark: Mark,
    ) -> Result<Cow<'a, str>, Error> {
        if handle.is_empty() {
            return Ok(suffix);
        }
        if let Some((_, prefix)) = self.tag_directives.iter().find(|(h, _)| *h == handle) {
            return Ok(Cow::Owned(format!("{prefix}{suffix}")));
        }
        match &*handle {
            "!" => Ok(Cow::Owned(format!("!{suffix}"))),
            "!!" => Ok(Cow::Owned(format!("{DEFAULT_TAG_PREFIX}{suffix}"))),
            _ => Err(self.error_ctx(
                "while parsing a node",
                start,
                "found undefined tag handle",
                tag_mark,
            )),
        }
    }

    fn parse_node<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
        block: bool,
        indentless_sequence: bool,
    ) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == Kind::Alias {
            self.state = self.pop_state();
            let t = self.scanner.take()?;
            let name = match t.kind {
                TokenKind::Alias(n) => n,
                _ => "",
            };
            return {
                sink.alias(name, mark)?;
                Ok(Step::Node)
            };
        }

        let start = mark;
        let mut anchor: Option<&'a str> = None;
        let mut tag_parts: Option<(Cow<'a, str>, Cow<'a, str>, Mark)> = None;
        let (mut kind, mut mark) = (kind, mark);
        for _ in 0..2 {
            match kind {
                Kind::Anchor if anchor.is_none() => {
                    if let TokenKind::Anchor(n) = self.scanner.take()?.kind {
                        anchor = Some(n);
                    }
                }
                Kind::Tag if tag_parts.is_none() => {
                    let t = self.scanner.take()?;
                    if let TokenKind::Tag(b) = t.kind {
                        let (handle, suffix) = *b;
                        tag_parts = Some((handle, suffix, t.mark));
                    }
                }
                _ => break,
            }
            kind = self.peek()?;
            mark = self.head_mark();
        }

        let tag = match tag_parts {
            Some((handle, suffix, tag_mark)) => {
                Some(self.resolve_tag(handle, suffix, start, tag_mark)?)
            }
            None => None,
        };

        if indentless_sequence && kind == Kind::BlockEntry {
            self.state = State::IndentlessSequenceEntry;
            return {
                sink.start(false, anchor, start)?;
                Ok(Step::Node)
            };
        }
        match kind {
            Kind::Scalar => {
                let t = self.scanner.take()?;
                let (value, style) = match t.kind {
                    TokenKind::Scalar { value, style } => (value, style),
                    _ => (Cow::Borrowed(""), ScalarStyle::Plain),
                };
                let plain_implicit = match &tag {
                    None => style == ScalarStyle::Plain,
                    Some(t) => t == "!",
                };
                self.state = self.pop_state();
                sink.scalar(value, style, anchor, tag, plain_implicit, start)?;
                Ok(Step::Node)
            }
            Kind::FlowSequenceStart => {
                self.state = State::FlowSequenceFirstEntry;
                {
                    sink.start(false, anchor, start)?;
                    Ok(Step::Node)
                }
            }
            Kind::FlowMappingStart => {
                self.state = State::FlowMappingFirstKey;
                {
                    sink.start(true, anchor, start)?;
                    Ok(Step::Node)
                }
            }
            Kind::BlockSequenceStart if block => {
                self.state = State::BlockSequenceFirstEntry;
                {
                    sink.start(false, anchor, start)?;
                    Ok(Step::Node)
                }
            }
            Kind::BlockMappingStart if block => {
                self.state = State::BlockMappingFirstKey;
                {
                    sink.start(true, anchor, start)?;
                    Ok(Step::Node)
                }
            }
            _ if anchor.is_some() || tag.is_some() => {
                // Properties without content: an empty scalar. (`implicit` is "no tag" here,
                // so a lone `!` gives the string "", as in go-yaml.)
                self.state = self.pop_state();
                let plain_implicit = tag.is_none();
                sink.scalar(
                    Cow::Borrowed(""),
                    ScalarStyle::Plain,
                    anchor,
                    tag,
                    plain_implicit,
                    start,
                )?;
                Ok(Step::Node)
            }
            _ => {
                let context = if block {
                    "while parsing a block node"
                } else {
                    "while parsing a flow node"
                };
                Err(self.error_ctx(context, start, "did not find expected node content", mark))
            }
        }
    }

    fn parse_block_sequence_entry<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
        first: bool,
    ) -> Result<Step, Error> {
        if first {
            self.peek()?;
            let mark = self.head_mark();
            self.marks.push(mark);
            self.skip()?;
        }
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == Kind::BlockEntry {
            let end = mark.next_char();
            self.skip()?;
            let kind = self.peek()?;
            if kind != Kind::BlockEntry && kind != Kind::BlockEnd {
                self.states.push(State::BlockSequenceEntry);
                return self.parse_node(sink, true, false);
            }
            self.state = State::BlockSequenceEntry;
            return empty_scalar(sink, end);
        }
        if kind == Kind::BlockEnd {
            self.state = self.pop_state();
            self.marks.pop();
            self.skip()?;
            return {
                sink.end(mark)?;
                Ok(Step::Node)
            };
        }
        let context_mark = self.marks.pop().unwrap_or_default();
        Err(self.error_ctx(
            "while parsing a block collection",
            context_mark,
            "did not find expected '-' indicator",
            mark,
        ))
    }

    fn parse_indentless_sequence_entry<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
    ) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == Kind::BlockEntry {
            let end = mark.next_char();
            self.skip()?;
            let kind = self.peek()?;
            if !matches!(
                kind,
                Kind::BlockEntry | Kind::Key | Kind::Value | Kind::BlockEnd
            ) {
                self.states.push(State::IndentlessSequenceEntry);
                return self.parse_node(sink, true, false);
            }
            self.state = State::IndentlessSequenceEntry;
            return empty_scalar(sink, end);
        }
        self.state = self.pop_state();
        {
            sink.end(mark)?;
            Ok(Step::Node)
        }
    }

    fn parse_block_mapping_key<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
        first: bool,
    ) -> Result<Step, Error> {
        if first {
            self.peek()?;
            let mark = self.head_mark();
            self.marks.push(mark);
            self.skip()?;
        }
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == Kind::Key {
            if let Some((value, style, key_mark, value_mark)) = self.scanner.take_key_scalar() {
                // KEY, the key's scalar, and VALUE (handled in the value state).
                self.pending_value = Some(value_mark);
                self.state = State::BlockMappingValue;
                let plain = style == ScalarStyle::Plain;
                sink.scalar(value, style, None, None, plain, key_mark)?;
                return Ok(Step::Node);
            }
            let end = mark.next_char();
            self.skip()?;
            let kind = self.peek()?;
            if !matches!(kind, Kind::Key | Kind::Value | Kind::BlockEnd) {
                self.states.push(State::BlockMappingValue);
                return self.parse_node(sink, true, true);
            }
            self.state = State::BlockMappingValue;
            return empty_scalar(sink, end);
        }
        if kind == Kind::BlockEnd {
            self.state = self.pop_state();
            self.marks.pop();
            self.skip()?;
            return {
                sink.end(mark)?;
                Ok(Step::Node)
            };
        }
        let context_mark = self.marks.pop().unwrap_or_default();
        Err(self.error_ctx(
            "while parsing a block mapping",
            context_mark,
            "did not find expected key",
            mark,
        ))
    }

    fn parse_block_mapping_value<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<Step, Error> {
        if let Some(value_mark) = self.pending_value.take() {
            // The VALUE of a fused KEY SCALAR VALUE: as if it had just been skipped.
            let end = value_mark.next_char();
            let kind = self.peek()?;
            if !matches!(kind, Kind::Key | Kind::Value | Kind::BlockEnd) {
                self.states.push(State::BlockMappingKey);
                return self.parse_node(sink, true, true);
            }
            self.state = State::BlockMappingKey;
            return empty_scalar(sink, end);
        }
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == Kind::Value {
            let end = mark.next_char();
            self.skip()?;
            let kind = self.peek()?;
            if !matches!(kind, Kind::Key | Kind::Value | Kind::BlockEnd) {
                self.states.push(State::BlockMappingKey);
                return self.parse_node(sink, true, true);
            }
            self.state = State::BlockMappingKey;
            return empty_scalar(sink, end);
        }
        self.state = State::BlockMappingKey;
        empty_scalar(sink, mark)
    }

    /// The start of an entry of a flow collection, as go-yaml reads it: the opening bracket
    /// taken on the first entry, the `,` before any later one (an error naming `context` when
    /// it is missing). The kind and mark of the token that follows, which may be `end`.
    fn flow_entry_start(
        &mut self,
        first: bool,
        end: Kind,
        context: &str,
        problem: &str,
    ) -> Result<(Kind, Mark), Error> {
        if first {
            self.peek()?;
            let mark = self.head_mark();
            self.marks.push(mark);
            self.skip()?;
        }
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == end || first {
            return Ok((kind, mark));
        }
        if kind != Kind::FlowEntry {
            let context_mark = self.marks.pop().unwrap_or_default();
            return Err(self.error_ctx(context, context_mark, problem, mark));
        }
        self.skip()?;
        Ok((self.peek()?, self.head_mark()))
    }

    fn parse_flow_sequence_entry<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
        first: bool,
    ) -> Result<Step, Error> {
        let (kind, mark) = self.flow_entry_start(
            first,
            Kind::FlowSequenceEnd,
            "while parsing a flow sequence",
            "did not find expected ',' or ']'",
        )?;
        if kind != Kind::FlowSequenceEnd {
            if kind == Kind::Key {
                self.state = State::FlowSequenceEntryMappingKey;
                self.skip()?;
                return {
                    sink.start(true, None, mark)?;
                    Ok(Step::Node)
                };
            }
            if kind != Kind::FlowSequenceEnd {
                self.states.push(State::FlowSequenceEntry);
                return self.parse_node(sink, false, false);
            }
        }
        self.state = self.pop_state();
        self.marks.pop();
        self.skip()?;
        {
            sink.end(mark)?;
            Ok(Step::Node)
        }
    }

    fn parse_flow_sequence_entry_mapping_key<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
    ) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if !matches!(kind, Kind::Value | Kind::FlowEntry | Kind::FlowSequenceEnd) {
            self.states.push(State::FlowSequenceEntryMappingValue);
            return self.parse_node(sink, false, false);
        }
        // go-yaml takes the empty key's mark from this token's end and moves over it.
        let end = mark.next_char();
        self.skip()?;
        self.state = State::FlowSequenceEntryMappingValue;
        empty_scalar(sink, end)
    }

    fn parse_flow_sequence_entry_mapping_value<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
    ) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if kind == Kind::Value {
            self.skip()?;
            let next = self.peek()?;
            if next != Kind::FlowEntry && next != Kind::FlowSequenceEnd {
                self.states.push(State::FlowSequenceEntryMappingEnd);
                return self.parse_node(sink, false, false);
            }
        }
        self.state = State::FlowSequenceEntryMappingEnd;
        empty_scalar(sink, mark)
    }

    fn parse_flow_sequence_entry_mapping_end<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
    ) -> Result<Step, Error> {
        self.peek()?;
        let mark = self.head_mark();
        self.state = State::FlowSequenceEntry;
        {
            sink.end(mark)?;
            Ok(Step::Node)
        }
    }

    fn parse_flow_mapping_key<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
        first: bool,
    ) -> Result<Step, Error> {
        let (kind, mark) = self.flow_entry_start(
            first,
            Kind::FlowMappingEnd,
            "while parsing a flow mapping",
            "did not find expected ',' or '}'",
        )?;
        if kind != Kind::FlowMappingEnd {
            if kind == Kind::Key {
                self.skip()?;
                let kind = self.peek()?;
                let mark = self.head_mark();
                if !matches!(kind, Kind::Value | Kind::FlowEntry | Kind::FlowMappingEnd) {
                    self.states.push(State::FlowMappingValue);
                    return self.parse_node(sink, false, false);
                }
                self.state = State::FlowMappingValue;
                return empty_scalar(sink, mark);
            }
            if kind != Kind::FlowMappingEnd {
                self.states.push(State::FlowMappingEmptyValue);
                return self.parse_node(sink, false, false);
            }
        }
        self.state = self.pop_state();
        self.marks.pop();
        self.skip()?;
        {
            sink.end(mark)?;
            Ok(Step::Node)
        }
    }

    fn parse_flow_mapping_value<S: Sink<'a>>(
        &mut self,
        sink: &mut S,
        empty: bool,
    ) -> Result<Step, Error> {
        let kind = self.peek()?;
        let mark = self.head_mark();
        if empty {
            self.state = State::FlowMappingKey;
            return empty_scalar(sink, mark);
        }
        if kind == Kind::Value {
            self.skip()?;
            let kind = self.peek()?;
            let mark = self.head_mark();
            if kind != Kind::FlowEntry && kind != Kind::FlowMappingEnd {
                self.states.push(State::FlowMappingKey);
                return self.parse_node(sink, false, false);
            }
            self.state = State::FlowMappingKey;
            return empty_scalar(sink, mark);
        }
        self.state = State::FlowMappingKey;
        empty_scalar(sink, mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::error::Origin;

    /// Records events as short strings.
    struct Record(Vec<String>);

    impl<'a> Sink<'a> for Record {
        fn scalar(
            &mut self,
            value: Cow<'a, str>,
            style: ScalarStyle,
            anchor: Option<&'a str>,
            tag: Option<Cow<'a, str>>,
            plain_implicit: bool,
            _: Mark,
        ) -> Result<(), Error> {
            let mut s = String::new();
            if let Some(a) = anchor {
                s.push_str(&format!("&{a} "));
            }
            if let Some(t) = tag {
                s.push_str(&format!("<{t}> "));
            }
            let q = match style {
                ScalarStyle::Plain => "",
                ScalarStyle::SingleQuoted => "'",
                ScalarStyle::DoubleQuoted => "\"",
                ScalarStyle::Literal => "|",
                ScalarStyle::Folded => ">",
            };
            s.push_str(&format!(
                "{q}{value}{}",
                if plain_implicit { "" } else { "!" }
            ));
            self.0.push(s);
            Ok(())
        }
        fn alias(&mut self, name: &'a str, _: Mark) -> Result<(), Error> {
            self.0.push(format!("*{name}"));
            Ok(())
        }
        fn start(&mut self, map: bool, anchor: Option<&'a str>, _: Mark) -> Result<(), Error> {
            let a = anchor.map(|a| format!("&{a} ")).unwrap_or_default();
            self.0.push(format!("{a}{}", if map { "{" } else { "[" }));
            Ok(())
        }
        fn end(&mut self, _: Mark) -> Result<(), Error> {
            self.0.push("}".into());
            Ok(())
        }
    }

    /// The events of the first document, space separated.
    fn events(text: &str) -> Result<String, Error> {
        let mut p = Parser::new(Scanner::new(text, Origin::START));
        let mut r = Record(Vec::new());
        while !matches!(p.step(&mut r)?, Step::StreamEnd | Step::DocumentEnd) {}
        Ok(r.0.join(" "))
    }

    #[test]
    fn block_and_flow_collections() {
        assert_eq!(
            events("a: [1, 2]\nb: {c: d}\n").unwrap(),
            "{ a [ 1 2 } b { c d } }"
        );
        assert_eq!(events("- a\n- - b\n  - c\n").unwrap(), "[ a [ b c } }");
        // An indentless sequence as a mapping value.
        assert_eq!(events("k:\n- a\n- b\nz: 1\n").unwrap(), "{ k [ a b } z 1 }");
        // Empty values and complex keys.
        assert_eq!(events("a:\n? b\n: c\n? d\n").unwrap(), "{ a  b c d  }");
        assert_eq!(events("[a: 1, b]").unwrap(), "[ { a 1 } b }");
        assert_eq!(events("{a, b: }").unwrap(), "{ a  b  }");
    }

    #[test]
    fn properties_and_tags() {
        assert_eq!(events("&x a: *x").unwrap(), "{ &x a *x }");
        assert_eq!(
            events("- !!str 1\n- !foo 2\n- ! 3\n- !x\n").unwrap(),
            "[ <tag:yaml.org,2002:str> 1! <!foo> 2! <!> 3 <!x> ! }"
        );
        assert_eq!(
            events("%TAG !e! tag:e.com,2000:\n--- !e!x 1\n").unwrap(),
            "<tag:e.com,2000:x> 1!"
        );
        assert!(events("!u!x 1").is_err());
        assert_eq!(
            events("- 'q'\n- \"d\"\n- |\n  l\n").unwrap(),
            "[ 'q! \"d! |l\n! }"
        );
    }

    #[test]
    fn documents_and_directives() {
        assert_eq!(events("--- a\n--- b\n").unwrap(), "a");
        assert_eq!(events("---\n").unwrap(), "");
        assert!(events("%YAML 1.2\n---\na\n").is_err());
        assert!(events("%YAML 1.1\n%YAML 1.1\n---\n").is_err());
        assert!(events("%YAML 1.1\na: 1\n").is_err());
        // What go-yaml's parser refuses.
        for bad in [
            "a: 1\n b: 2\n c",
            "[a",
            "{a: 1",
            "- a\nb: c",
            "[? : x]",
            "a: b: c",
            "[- a]",
        ] {
            assert!(events(bad).is_err(), "{bad:?}");
        }
    }
}
