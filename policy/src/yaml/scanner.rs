//! The scanner: text to tokens, with go-yaml v2.4's rules.
//!
//! go-yaml v2 is a Go rendering of an early libyaml, and kubectl's acceptance of a file is
//! decided here, so this scanner keeps libyaml's *design* (a token queue, one possible "simple
//! key" per flow level that is turned into a KEY token when its `:` shows up, an indentation
//! stack that emits BLOCK-END tokens) and go-yaml's *rules* where they differ from libyaml 0.2
//! (which serde_norway uses):
//!
//! * In flow context a plain scalar ends at `,` `?` `[` `]` `{` `}` and at `:` followed by a
//!   blank; a `:` followed by anything else is content. So `[001:db8::]` is `["001:db8::"]`
//!   and `[a?b]` is an error (the `?` starts a key).
//! * Escapes in double quotes are go-yaml's set: `\'` is accepted, `\/` is not.
//! * Simple keys go stale lazily, as go-yaml checks them: only when the token at the head of
//!   the queue is a possible key, when a `:` arrives, or when a key is replaced. That decides
//!   how far ahead the scanner reads, which matters because go-yaml (and so kubectl) ignores
//!   whatever follows the first document's root node as long as scanning it did not fail.
//! * A BOM is skipped only at the very start of the input (the reader does it); go-yaml's
//!   "BOM at the start of a line" check looks at the wrong byte and never fires, so a BOM at
//!   the start of a later line is content.
//! * Limits: an implicit key must end within 1024 characters on its line (go-yaml's); nesting
//!   of flow collections and of block indentation is limited to [`MAX_DEPTH`] (go-yaml allows
//!   10000; we stop earlier so that no reader's stack can overflow).
//!
//! The input is a `&str` already checked for characters YAML forbids (see `text.rs`), so the
//! scanner works on bytes and never meets invalid UTF-8 or NUL; a NUL (`0`) from [`Scanner::at`]
//! means "end of input". kubectl hands go-yaml each chunk with a `\n` after its last line; when
//! the chunk we borrow lacks it, [`Scanner::at`] supplies a virtual one so that block scalars
//! and positions come out the same.
//!
//! Plain and quoted scalars that need no folding or unescaping are borrowed from the text; the
//! others are built in an owned `String`. A scalar simple key of block context is emitted as
//! one [`TokenKind::KeyScalar`] standing for KEY, SCALAR and VALUE, the parser's most common
//! sequence, which saves work without changing what is scanned when.

use std::borrow::Cow;

use super::error::{Error, Origin, Pos};

/// Deepest nesting of collections accepted (go-yaml: 10000). Deeper input is refused with an
/// error rather than risking a stack overflow in recursive consumers (serde, `to_value`).
pub const MAX_DEPTH: usize = 1000;

/// Longest implicit key, in characters (go-yaml and the YAML spec: 1024).
const MAX_SIMPLE_KEY_LEN: usize = 1024;

/// A position as go-yaml counts it: 0-based character index, line and column, all counted
/// from the start of the chunk being read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    pub index: u32,
    pub line: u32,
    pub column: u32,
}

impl Mark {
    /// The mark one (ASCII) character further on the same line: the end of a one-character
    /// indicator token.
    pub(crate) fn next_char(self) -> Mark {
        Mark {
            index: self.index + 1,
            line: self.line,
            column: self.column + 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind<'a> {
    StreamStart,
    StreamEnd,
    VersionDirective {
        major: u32,
        minor: u32,
    },
    /// `(handle, prefix)`; boxed, as tags are rare and tokens are moved a lot.
    TagDirective(Box<(Cow<'a, str>, Cow<'a, str>)>),
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
    Alias(&'a str),
    Anchor(&'a str),
    /// `(handle, suffix)`: the handle is empty for a verbatim tag `!<...>` and for the lone
    /// `!` (whose suffix is `!`).
    Tag(Box<(Cow<'a, str>, Cow<'a, str>)>),
    Scalar {
        value: Cow<'a, str>,
        style: ScalarStyle,
    },
    /// KEY, SCALAR and VALUE in one token: a scalar simple key of block context, found
    /// complete when its `:` was read (the common `key: value`). It stands for exactly those
    /// three tokens; `mark` is the key's, `value_mark` the `:`'s. Fusing them saves the queue
    /// insertion and two tokens per key; the parser takes it apart (`parser.rs`).
    KeyScalar {
        value: Cow<'a, str>,
        style: ScalarStyle,
        value_mark: Mark,
    },
}

/// Line breaks collected while scanning a scalar. go-yaml keeps them as text (LF, or LS/PS
/// as they are); the usual case of LFs only is kept as a count, so no allocation is made.
#[derive(Debug, Default)]
struct Breaks {
    lf: usize,
    /// Set once an LS or PS shows up: then the exact breaks.
    text: Option<String>,
}

impl Breaks {
    fn push(&mut self, brk: &str) {
        match &mut self.text {
            Some(t) => t.push_str(brk),
            None if brk == "\n" => self.lf += 1,
            None => {
                let mut t = "\n".repeat(self.lf);
                t.push_str(brk);
                self.text = Some(t);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.lf == 0 && self.text.is_none()
    }

    fn starts_with_lf(&self) -> bool {
        match &self.text {
            Some(t) => t.starts_with('\n'),
            None => self.lf > 0,
        }
    }

    fn append_to(&self, s: &mut String) {
        match &self.text {
            Some(t) => s.push_str(t),
            None => {
                for _ in 0..self.lf {
                    s.push('\n');
                }
            }
        }
    }

    fn clear(&mut self) {
        self.lf = 0;
        self.text = None;
    }
}

/// No possible simple key starts at this token.
const NO_KEY: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Token<'a> {
    pub kind: TokenKind<'a>,
    pub mark: Mark,
    /// The flow level whose possible simple key starts at this token (go-yaml's
    /// `simple_keys_by_tok` entry for it), or [`NO_KEY`].
    key_level: u32,
}

/// The token queue. (Since `KeyScalar` fuses the common keys, insertions in the middle are
/// rare and a `VecDeque` serves well.)
#[derive(Debug, Default)]
struct TokenQueue<'a> {
    buf: std::collections::VecDeque<Token<'a>>,
}

impl<'a> TokenQueue<'a> {
    fn with_capacity(n: usize) -> Self {
        TokenQueue {
            buf: std::collections::VecDeque::with_capacity(n),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    fn front(&self) -> Option<&Token<'a>> {
        self.buf.front()
    }

    #[inline]
    fn last(&self) -> Option<&Token<'a>> {
        self.buf.back()
    }

    #[inline]
    fn last_mut(&mut self) -> Option<&mut Token<'a>> {
        self.buf.back_mut()
    }

    #[inline]
    fn pop_front(&mut self) -> Option<Token<'a>> {
        self.buf.pop_front()
    }

    #[inline]
    fn push_back(&mut self, t: Token<'a>) {
        self.buf.push_back(t);
    }

    /// Inserts `at` places after the head (clamped to the end).
    fn insert(&mut self, at: usize, t: Token<'a>) {
        let i = at.min(self.buf.len());
        self.buf.insert(i, t);
    }

    fn get_mut(&mut self, at: usize) -> Option<&mut Token<'a>> {
        self.buf.get_mut(at)
    }

    fn iter_mut_from(&mut self, at: usize) -> impl Iterator<Item = &mut Token<'a>> {
        self.buf.iter_mut().skip(at)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SimpleKey {
    possible: bool,
    required: bool,
    token_number: usize,
    mark: Mark,
}

pub(crate) struct Scanner<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next character.
    pos: usize,
    mark: Mark,
    /// The chunk does not end with `\n`: behave as if it did (kubectl adds one).
    virtual_newline: bool,
    origin: Origin,

    tokens: TokenQueue<'a>,
    /// Number of tokens handed to the parser so far (go-yaml's `tokens_parsed`).
    tokens_parsed: usize,
    token_available: bool,
    stream_start_produced: bool,

    indent: isize,
    indents: Vec<isize>,
    flow_level: usize,
    simple_key_allowed: bool,
    simple_keys: Vec<SimpleKey>,
    /// Set by `save_simple_key` for the token about to be pushed.
    pending_key_level: Option<u32>,
}

/// Bytes that may stop a run of plain-scalar content: blanks, breaks, `:`, NUL, every
/// non-ASCII byte (looked at closely: NEL, LS and PS are breaks) and, in flow context, the
/// flow indicators and `?`.
// Evaluated at compile time: an index out of range would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const fn plain_stops(flow: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0x80;
    while i < 256 {
        t[i] = true;
        i += 1;
    }
    t[0] = true;
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    t[b':' as usize] = true;
    t[0xC2] = true;
    t[0xE2] = true;
    if flow {
        t[b',' as usize] = true;
        t[b'?' as usize] = true;
        t[b'[' as usize] = true;
        t[b']' as usize] = true;
        t[b'{' as usize] = true;
        t[b'}' as usize] = true;
    }
    t
}
static PLAIN_STOPS_BLOCK: [bool; 256] = plain_stops(false);

/// A lookup in a 256-entry byte table (a `u8` index cannot be out of range).
#[inline(always)]
#[allow(clippy::indexing_slicing)]
fn is_stop(table: &[bool; 256], b: u8) -> bool {
    table[b as usize]
}
static PLAIN_STOPS_FLOW: [bool; 256] = plain_stops(true);

/// Bytes that may stop a run of quoted-scalar content: blanks, breaks, quotes, backslash, end.
#[allow(clippy::indexing_slicing)]
const fn quoted_stops() -> [bool; 256] {
    let mut t = [false; 256];
    t[0] = true;
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\'' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0xC2] = true;
    t[0xE2] = true;
    t
}
static QUOTED_STOPS: [bool; 256] = quoted_stops();

/// go-yaml's `is_alpha`: the characters of anchor names, directive names and tag handles.
fn is_alpha(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Characters allowed in a tag URI (besides `%` escapes), as go-yaml lists them.
fn is_uri_char(b: u8) -> bool {
    is_alpha(b)
        || matches!(
            b,
            b';' | b'/'
                | b'?'
                | b':'
                | b'@'
                | b'&'
                | b'='
                | b'+'
                | b'$'
                | b','
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')'
                | b'['
                | b']'
                | b'%'
        )
}

/// Width in bytes of the UTF-8 sequence led by `b` (the input is valid UTF-8).
fn utf8_width(b: u8) -> usize {
    if b < 0x80 {
        1
    } else if b < 0xE0 {
        2
    } else if b < 0xF0 {
        3
    } else {
        4
    }
}

fn hex_value(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(src: &'a str, origin: Origin) -> Scanner<'a> {
        Scanner {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            mark: Mark::default(),
            virtual_newline: !src.is_empty() && !src.ends_with('\n'),
            origin,
            tokens: TokenQueue::with_capacity(16),
            tokens_parsed: 0,
            token_available: false,
            stream_start_produced: false,
            indent: -1,
            indents: Vec::with_capacity(16),
            flow_level: 0,
            simple_key_allowed: false,
            simple_keys: Vec::with_capacity(8),
            pending_key_level: None,
        }
    }

    /// The absolute position of a mark, for errors and node positions.
    pub(crate) fn pos_of(&self, mark: Mark) -> Pos {
        self.origin.pos(mark.line as usize, mark.column as usize)
    }

    #[cold]
    #[inline(never)]
    fn error(&self, mark: Mark, problem: &str) -> Error {
        Error::at(self.pos_of(mark), problem)
    }

    /// A scanner error as go-yaml reports it: the problem at the current position, with the
    /// construct being scanned and where it started.
    #[cold]
    #[inline(never)]
    fn error_ctx(&self, context: &str, context_mark: Mark, problem: &str) -> Error {
        let cp = self.pos_of(context_mark);
        Error::at(
            self.pos_of(self.mark),
            format!(
                "{problem} ({context} at line {} column {})",
                cp.line, cp.column
            ),
        )
    }

    // ----- characters ---------------------------------------------------------------------

    /// The byte at `i`; the virtual final `\n` right after the text when the chunk lacks one;
    /// `0` past the end.
    #[inline(always)]
    fn at(&self, i: usize) -> u8 {
        match self.bytes.get(i) {
            Some(&b) => b,
            None if i == self.bytes.len() && self.virtual_newline => b'\n',
            None => 0,
        }
    }

    #[inline(always)]
    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    #[inline]
    fn is_break_at(&self, i: usize) -> bool {
        match self.at(i) {
            b'\r' | b'\n' => true,
            0xC2 => self.at(i + 1) == 0x85,
            0xE2 => self.at(i + 1) == 0x80 && matches!(self.at(i + 2), 0xA8 | 0xA9),
            _ => false,
        }
    }

    #[inline]
    fn is_blank_at(&self, i: usize) -> bool {
        matches!(self.at(i), b' ' | b'\t')
    }

    #[inline]
    fn is_z_at(&self, i: usize) -> bool {
        self.at(i) == 0
    }

    #[inline]
    fn is_breakz_at(&self, i: usize) -> bool {
        self.is_z_at(i) || self.is_break_at(i)
    }

    #[inline]
    fn is_blankz_at(&self, i: usize) -> bool {
        self.is_blank_at(i) || self.is_breakz_at(i)
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or("")
    }

    /// Moves over one character that is not a line break.
    #[inline]
    fn skip(&mut self) {
        self.pos += utf8_width(self.cur());
        self.mark.index += 1;
        self.mark.column += 1;
    }

    /// Moves over `n` ASCII characters that are not line breaks.
    #[inline]
    fn skip_ascii(&mut self, n: usize) {
        self.pos += n;
        self.mark.index += n as u32;
        self.mark.column += n as u32;
    }

    /// Moves to byte `to` on the same line, counting the characters passed.
    #[inline]
    fn advance_to(&mut self, to: usize, ascii: bool) {
        let n = if ascii {
            to - self.pos
        } else {
            self.bytes
                .get(self.pos..to)
                .map_or(0, |s| s.iter().filter(|&&b| (b as i8) >= -0x40).count())
        };
        self.pos = to;
        self.mark.index += n as u32;
        self.mark.column += n as u32;
    }

    /// Bytes of the line break at `i` if one starts there (0 if not). CR LF is one break, and
    /// so is CR CR LF: kubectl's line reader drops the CR right before each LF, so go-yaml
    /// sees CR LF there. (The virtual final LF is added after that, so it drops nothing.)
    #[inline]
    fn break_width(&self, i: usize) -> usize {
        match self.at(i) {
            b'\n' => 1,
            b'\r' => match self.at(i + 1) {
                b'\n' => 2,
                b'\r' if self.bytes.get(i + 2) == Some(&b'\n') => 3,
                _ => 1,
            },
            0xC2 if self.at(i + 1) == 0x85 => 2,
            0xE2 if self.at(i + 1) == 0x80 && matches!(self.at(i + 2), 0xA8 | 0xA9) => 3,
            _ => 0,
        }
    }

    /// Moves over a line break.
    fn skip_line(&mut self) {
        let w = self.break_width(self.pos);
        if w > 0 {
            // go-yaml counts CR LF as two characters.
            self.mark.index += if self.cur() == b'\r' && w > 1 { 2 } else { 1 };
            self.pos += w;
            self.mark.column = 0;
            self.mark.line += 1;
        }
    }

    /// Moves over a line break and records it the way go-yaml does: CR, LF, CR LF and NEL
    /// become `\n`; LS and PS are kept as they are.
    fn read_line(&mut self, b: &mut Breaks) {
        let w = self.break_width(self.pos);
        if w == 0 {
            return;
        }
        if self.cur() == 0xE2 {
            b.push(self.slice(self.pos, self.pos + 3));
        } else {
            b.push("\n");
        }
        self.skip_line();
    }

    // ----- the token queue ----------------------------------------------------------------

    /// The next token, fetching as many as needed to know what it is.
    pub(crate) fn peek(&mut self) -> Result<&Token<'a>, Error> {
        if !self.token_available {
            self.fetch_more_tokens()?;
        }
        match self.tokens.front() {
            Some(t) => Ok(t),
            None => Err(self.error(self.mark, "internal error: no token available")),
        }
    }

    /// The mark of the token at the head of the queue (after [`peek`](Self::peek)).
    pub(crate) fn head_mark(&self) -> Mark {
        self.tokens.front().map(|t| t.mark).unwrap_or(self.mark)
    }

    /// Takes the token at the head if it is a fused `KeyScalar`: (value, style, key mark,
    /// `:` mark).
    pub(crate) fn take_key_scalar(&mut self) -> Option<(Cow<'a, str>, ScalarStyle, Mark, Mark)> {
        if !matches!(
            self.tokens.front().map(|t| &t.kind),
            Some(TokenKind::KeyScalar { .. })
        ) {
            return None;
        }
        self.token_available = false;
        self.tokens_parsed += 1;
        match self.tokens.pop_front() {
            Some(Token {
                kind:
                    TokenKind::KeyScalar {
                        value,
                        style,
                        value_mark,
                    },
                mark,
                ..
            }) => Some((value, style, mark, value_mark)),
            _ => None,
        }
    }

    /// Removes the token that [`peek`](Self::peek) returned.
    pub(crate) fn take(&mut self) -> Result<Token<'a>, Error> {
        if !self.token_available {
            self.fetch_more_tokens()?;
        }
        self.token_available = false;
        self.tokens_parsed += 1;
        match self.tokens.pop_front() {
            Some(t) => Ok(t),
            None => Err(self.error(self.mark, "internal error: no token available")),
        }
    }

    /// Removes the token that [`peek`](Self::peek) returned, which the caller does not need.
    #[inline]
    pub(crate) fn skip_token(&mut self) -> Result<(), Error> {
        if !self.token_available {
            self.fetch_more_tokens()?;
        }
        self.token_available = false;
        self.tokens_parsed += 1;
        match self.tokens.pop_front() {
            // Indicator tokens own nothing: no need for drop glue.
            Some(
                t @ Token {
                    kind:
                        TokenKind::Key
                        | TokenKind::Value
                        | TokenKind::BlockEntry
                        | TokenKind::BlockEnd
                        | TokenKind::BlockMappingStart
                        | TokenKind::BlockSequenceStart
                        | TokenKind::FlowEntry,
                    ..
                },
            ) => std::mem::forget(t),
            Some(t) => drop(t),
            None => return Err(self.error(self.mark, "internal error: no token available")),
        }
        Ok(())
    }

    fn push_token(&mut self, kind: TokenKind<'a>, mark: Mark) {
        self.tokens.push_back(Token {
            kind,
            mark,
            key_level: NO_KEY,
        });
    }

    /// Inserts a token `at` places after the head of the queue (clamped to the queue).
    fn insert_token(&mut self, at: usize, kind: TokenKind<'a>, mark: Mark) {
        self.tokens.insert(
            at,
            Token {
                kind,
                mark,
                key_level: NO_KEY,
            },
        );
    }

    /// Fetches tokens until the head of the queue cannot turn out to be a simple key (and so
    /// cannot get a KEY token, or a BLOCK-MAPPING-START, inserted before it).
    fn fetch_more_tokens(&mut self) -> Result<(), Error> {
        loop {
            if let Some(head) = self.tokens.front() {
                let level = head.key_level;
                if level == NO_KEY {
                    break;
                }
                // The entry may point at a level that no longer exists; go-yaml would index
                // out of range there, we treat it as "no key".
                if (level as usize) >= self.simple_keys.len() {
                    break;
                }
                if !self.simple_key_is_valid(level as usize)? {
                    break;
                }
            }
            self.fetch_next_token()?;
        }
        self.token_available = true;
        Ok(())
    }

    /// Whether the possible simple key of a flow level can still be a key: it must be on the
    /// current line and start at most 1024 characters back. A required key that can no longer
    /// be one is an error.
    fn simple_key_is_valid(&mut self, level: usize) -> Result<bool, Error> {
        let Some(key) = self.simple_keys.get(level).copied() else {
            return Ok(false);
        };
        if !key.possible {
            return Ok(false);
        }
        if key.mark.line < self.mark.line
            || key.mark.index as usize + MAX_SIMPLE_KEY_LEN < self.mark.index as usize
        {
            if key.required {
                return Err(self.error_ctx(
                    "while scanning a simple key",
                    key.mark,
                    "could not find expected ':'",
                ));
            }
            if let Some(k) = self.simple_keys.get_mut(level) {
                k.possible = false;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Clears the queue's record that a possible key starts at `token_number`.
    fn forget_key_token(&mut self, token_number: usize) {
        if let Some(i) = token_number.checked_sub(self.tokens_parsed) {
            if let Some(t) = self.tokens.get_mut(i) {
                t.key_level = NO_KEY;
            }
        }
    }

    /// Records that the next token may start a simple key (if keys are allowed here).
    fn save_simple_key(&mut self) -> Result<(), Error> {
        self.pending_key_level = None;
        if !self.simple_key_allowed {
            return Ok(());
        }
        let required = self.flow_level == 0 && self.indent == self.mark.column as isize;
        let key = SimpleKey {
            possible: true,
            required,
            token_number: self.tokens_parsed + self.tokens.len(),
            mark: self.mark,
        };
        self.remove_simple_key()?;
        let level = self.simple_keys.len().saturating_sub(1);
        if let Some(k) = self.simple_keys.last_mut() {
            *k = key;
        }
        // The key's token is the next one pushed; mark it when it is (see `mark_key_token`).
        self.pending_key_level = Some(level as u32);
        Ok(())
    }

    /// Removes the possible simple key of the current flow level; a required one is an error.
    fn remove_simple_key(&mut self) -> Result<(), Error> {
        let Some(key) = self.simple_keys.last().copied() else {
            return Ok(());
        };
        if key.possible {
            if key.required {
                return Err(self.error_ctx(
                    "while scanning a simple key",
                    key.mark,
                    "could not find expected ':'",
                ));
            }
            if let Some(k) = self.simple_keys.last_mut() {
                k.possible = false;
            }
            self.forget_key_token(key.token_number);
        }
        Ok(())
    }

    #[inline(never)]
    fn increase_flow_level(&mut self) -> Result<(), Error> {
        self.simple_keys.push(SimpleKey {
            possible: false,
            required: false,
            token_number: self.tokens_parsed + self.tokens.len(),
            mark: self.mark,
        });
        self.flow_level += 1;
        if self.flow_level > MAX_DEPTH {
            return Err(self.error_ctx(
                "while increasing flow level",
                self.mark,
                &format!("exceeded max depth of {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    #[inline(never)]
    fn decrease_flow_level(&mut self) {
        if self.flow_level > 0 {
            self.flow_level -= 1;
            if let Some(key) = self.simple_keys.pop() {
                self.forget_key_token(key.token_number);
            }
        }
    }

    /// Opens a block collection at `column` if it is deeper than the current indentation,
    /// inserting its start token before token `number` (or at the end).
    fn roll_indent(
        &mut self,
        column: usize,
        number: Option<usize>,
        kind: TokenKind<'a>,
        mark: Mark,
    ) -> Result<(), Error> {
        if self.flow_level > 0 {
            return Ok(());
        }
        if self.indent < column as isize {
            self.indents.push(self.indent);
            self.indent = column as isize;
            if self.indents.len() > MAX_DEPTH {
                let m = self.simple_keys.last().map_or(self.mark, |k| k.mark);
                return Err(self.error_ctx(
                    "while increasing indent level",
                    m,
                    &format!("exceeded max depth of {MAX_DEPTH}"),
                ));
            }
            match number {
                Some(n) => self.insert_token(n.saturating_sub(self.tokens_parsed), kind, mark),
                None => self.push_token(kind, mark),
            }
        }
        Ok(())
    }

    /// Closes the block collections deeper than `column`, one BLOCK-END each.
    fn unroll_indent(&mut self, column: isize) {
        if self.flow_level > 0 {
            return;
        }
        while self.indent > column {
            self.push_token(TokenKind::BlockEnd, self.mark);
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    // ----- fetching -----------------------------------------------------------------------

    fn fetch_next_token(&mut self) -> Result<(), Error> {
        if !self.stream_start_produced {
            self.indent = -1;
            self.simple_keys.push(SimpleKey::default());
            self.simple_key_allowed = true;
            self.stream_start_produced = true;
            self.push_token(TokenKind::StreamStart, self.mark);
            return Ok(());
        }
        self.scan_to_next_token();
        self.unroll_indent(self.mark.column as isize);

        let c = self.cur();
        // The usual case first: a letter or digit can only start a plain scalar.
        if c.is_ascii_alphanumeric() {
            return self.fetch_plain_scalar();
        }
        if c == 0 {
            return self.fetch_stream_end();
        }
        if self.mark.column == 0 {
            if c == b'%' {
                return self.fetch_directive();
            }
            if (c == b'-' || c == b'.')
                && self.at(self.pos + 1) == c
                && self.at(self.pos + 2) == c
                && self.is_blankz_at(self.pos + 3)
            {
                let kind = if c == b'-' {
                    TokenKind::DocumentStart
                } else {
                    TokenKind::DocumentEnd
                };
                return self.fetch_document_indicator(kind);
            }
        }
        let flow = self.flow_level > 0;
        let next_blankz = self.is_blankz_at(self.pos + 1);
        match c {
            b'[' => self.fetch_flow_collection_start(TokenKind::FlowSequenceStart),
            b'{' => self.fetch_flow_collection_start(TokenKind::FlowMappingStart),
            b']' => self.fetch_flow_collection_end(TokenKind::FlowSequenceEnd),
            b'}' => self.fetch_flow_collection_end(TokenKind::FlowMappingEnd),
            b',' => self.fetch_flow_entry(),
            b'-' if next_blankz => self.fetch_block_entry(),
            b'?' if flow || next_blankz => self.fetch_key(),
            b':' if flow || next_blankz => self.fetch_value(),
            b'*' => self.fetch_anchor(true),
            b'&' => self.fetch_anchor(false),
            b'!' => self.fetch_tag(),
            b'|' if !flow => self.fetch_block_scalar(true),
            b'>' if !flow => self.fetch_block_scalar(false),
            b'\'' => self.fetch_flow_scalar(true),
            b'"' => self.fetch_flow_scalar(false),
            _ => {
                let indicator = self.is_blankz_at(self.pos)
                    || matches!(
                        c,
                        b'-' | b'?'
                            | b':'
                            | b','
                            | b'['
                            | b']'
                            | b'{'
                            | b'}'
                            | b'#'
                            | b'&'
                            | b'*'
                            | b'!'
                            | b'|'
                            | b'>'
                            | b'\''
                            | b'"'
                            | b'%'
                            | b'@'
                            | b'`'
                    );
                if !indicator
                    || (c == b'-' && !self.is_blank_at(self.pos + 1))
                    || (!flow && (c == b'?' || c == b':') && !next_blankz)
                {
                    self.fetch_plain_scalar()
                } else {
                    Err(self.error_ctx(
                        "while scanning for the next token",
                        self.mark,
                        "found character that cannot start any token",
                    ))
                }
            }
        }
    }

    /// Skips blanks, comments and line breaks up to the next token. Tabs count as blanks in
    /// flow context and where no simple key may start (after an indicator on the line);
    /// elsewhere they are left to fail as "cannot start any token", as in go-yaml.
    fn scan_to_next_token(&mut self) {
        loop {
            // Blanks, on the bytes directly (the common run of indentation spaces).
            let tabs = self.flow_level > 0 || !self.simple_key_allowed;
            let from = self.pos;
            let mut p = from;
            while let Some(&b) = self.bytes.get(p) {
                if b == b' ' || (tabs && b == b'\t') {
                    p += 1;
                } else {
                    break;
                }
            }
            self.skip_ascii(p - from);
            if self.cur() == b'#' {
                while !self.is_breakz_at(self.pos) {
                    self.skip();
                }
            }
            if self.is_break_at(self.pos) {
                self.skip_line();
                if self.flow_level == 0 {
                    self.simple_key_allowed = true;
                }
            } else {
                break;
            }
        }
    }

    #[inline(never)]
    fn fetch_stream_end(&mut self) -> Result<(), Error> {
        if self.mark.column != 0 {
            self.mark.column = 0;
            self.mark.line += 1;
        }
        self.unroll_indent(-1);
        self.remove_simple_key()?;
        self.simple_key_allowed = false;
        self.push_token(TokenKind::StreamEnd, self.mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_directive(&mut self) -> Result<(), Error> {
        self.unroll_indent(-1);
        self.remove_simple_key()?;
        self.simple_key_allowed = false;
        let mark = self.mark;
        let kind = self.scan_directive()?;
        self.push_token(kind, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_document_indicator(&mut self, kind: TokenKind<'a>) -> Result<(), Error> {
        self.unroll_indent(-1);
        self.remove_simple_key()?;
        self.simple_key_allowed = false;
        let mark = self.mark;
        self.skip_ascii(3);
        self.push_token(kind, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_flow_collection_start(&mut self, kind: TokenKind<'a>) -> Result<(), Error> {
        self.save_simple_key()?;
        self.increase_flow_level()?;
        self.simple_key_allowed = true;
        let mark = self.mark;
        self.skip_ascii(1);
        self.push_key_candidate(kind, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_flow_collection_end(&mut self, kind: TokenKind<'a>) -> Result<(), Error> {
        self.remove_simple_key()?;
        self.decrease_flow_level();
        self.simple_key_allowed = false;
        let mark = self.mark;
        self.skip_ascii(1);
        self.push_token(kind, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_flow_entry(&mut self) -> Result<(), Error> {
        self.remove_simple_key()?;
        self.simple_key_allowed = true;
        let mark = self.mark;
        self.skip_ascii(1);
        self.push_token(TokenKind::FlowEntry, mark);
        Ok(())
    }

    fn fetch_block_entry(&mut self) -> Result<(), Error> {
        if self.flow_level == 0 {
            if !self.simple_key_allowed {
                return Err(self.error(
                    self.mark,
                    "block sequence entries are not allowed in this context",
                ));
            }
            self.roll_indent(
                self.mark.column as usize,
                None,
                TokenKind::BlockSequenceStart,
                self.mark,
            )?;
        }
        // In flow context a '-' entry is an error the parser reports.
        self.remove_simple_key()?;
        self.simple_key_allowed = true;
        let mark = self.mark;
        self.skip_ascii(1);
        self.push_token(TokenKind::BlockEntry, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_key(&mut self) -> Result<(), Error> {
        if self.flow_level == 0 {
            if !self.simple_key_allowed {
                return Err(self.error(self.mark, "mapping keys are not allowed in this context"));
            }
            self.roll_indent(
                self.mark.column as usize,
                None,
                TokenKind::BlockMappingStart,
                self.mark,
            )?;
        }
        self.remove_simple_key()?;
        self.simple_key_allowed = self.flow_level == 0;
        let mark = self.mark;
        self.skip_ascii(1);
        self.push_token(TokenKind::Key, mark);
        Ok(())
    }

    fn fetch_value(&mut self) -> Result<(), Error> {
        let level = self.simple_keys.len().saturating_sub(1);
        if self.simple_key_is_valid(level)? {
            // The possible key was one: put KEY (and maybe BLOCK-MAPPING-START) before it.
            let key = self.simple_keys.get(level).copied().unwrap_or_default();
            let at = key.token_number.saturating_sub(self.tokens_parsed);
            let last_is_scalar = matches!(
                self.tokens.last().map(|t| &t.kind),
                Some(TokenKind::Scalar { .. })
            );
            if self.flow_level == 0 && at + 1 == self.tokens.len() && last_is_scalar {
                if let Some(t) = self.tokens.last_mut() {
                    if let TokenKind::Scalar { value, style } =
                        std::mem::replace(&mut t.kind, TokenKind::Key)
                    {
                        // KEY SCALAR VALUE as one token (see `TokenKind::KeyScalar`).
                        t.kind = TokenKind::KeyScalar {
                            value,
                            style,
                            value_mark: self.mark,
                        };
                        t.key_level = NO_KEY;
                        self.roll_indent(
                            key.mark.column as usize,
                            Some(key.token_number),
                            TokenKind::BlockMappingStart,
                            key.mark,
                        )?;
                        if let Some(k) = self.simple_keys.get_mut(level) {
                            k.possible = false;
                        }
                        self.simple_key_allowed = false;
                        self.skip_ascii(1);
                        return Ok(());
                    }
                }
            }
            self.insert_token(at, TokenKind::Key, key.mark);
            self.roll_indent(
                key.mark.column as usize,
                Some(key.token_number),
                TokenKind::BlockMappingStart,
                key.mark,
            )?;
            if let Some(k) = self.simple_keys.get_mut(level) {
                k.possible = false;
            }
            // The key's token moved one or two places back; clear its mark wherever it is.
            for t in self.tokens.iter_mut_from(at) {
                if t.key_level == level as u32 {
                    t.key_level = NO_KEY;
                    break;
                }
            }
            self.simple_key_allowed = false;
        } else {
            // A ':' after a complex key ('?'), or after nothing.
            if self.flow_level == 0 {
                if !self.simple_key_allowed {
                    return Err(
                        self.error(self.mark, "mapping values are not allowed in this context")
                    );
                }
                self.roll_indent(
                    self.mark.column as usize,
                    None,
                    TokenKind::BlockMappingStart,
                    self.mark,
                )?;
            }
            self.simple_key_allowed = self.flow_level == 0;
        }
        let mark = self.mark;
        self.skip_ascii(1);
        self.push_token(TokenKind::Value, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_anchor(&mut self, alias: bool) -> Result<(), Error> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        let mark = self.mark;
        self.skip_ascii(1);
        let start = self.pos;
        while is_alpha(self.cur()) {
            self.skip_ascii(1);
        }
        let name = self.slice(start, self.pos);
        let c = self.cur();
        if name.is_empty()
            || !(self.is_blankz_at(self.pos)
                || matches!(c, b'?' | b':' | b',' | b']' | b'}' | b'%' | b'@' | b'`'))
        {
            let context = if alias {
                "while scanning an alias"
            } else {
                "while scanning an anchor"
            };
            return Err(self.error_ctx(
                context,
                mark,
                "did not find expected alphabetic or numeric character",
            ));
        }
        let kind = if alias {
            TokenKind::Alias(name)
        } else {
            TokenKind::Anchor(name)
        };
        self.push_key_candidate(kind, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_tag(&mut self) -> Result<(), Error> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        let mark = self.mark;
        let kind = self.scan_tag()?;
        self.push_key_candidate(kind, mark);
        Ok(())
    }

    #[inline(never)]
    fn fetch_block_scalar(&mut self, literal: bool) -> Result<(), Error> {
        self.remove_simple_key()?;
        self.simple_key_allowed = true;
        self.scan_block_scalar(literal)
    }

    #[inline(never)]
    fn fetch_flow_scalar(&mut self, single: bool) -> Result<(), Error> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        self.scan_flow_scalar(single)
    }

    fn fetch_plain_scalar(&mut self) -> Result<(), Error> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        self.scan_plain_scalar()
    }

    /// Pushes a token that `save_simple_key` may just have recorded as a possible key.
    fn push_key_candidate(&mut self, kind: TokenKind<'a>, mark: Mark) {
        let key_level = self.pending_key_level.take().unwrap_or(NO_KEY);
        self.tokens.push_back(Token {
            kind,
            mark,
            key_level,
        });
    }
}

// ----- scanning of the tokens with content ---------------------------------------------------

impl<'a> Scanner<'a> {
    fn skip_blanks(&mut self) {
        while self.is_blank_at(self.pos) {
            self.skip_ascii(1);
        }
    }

    /// `%YAML 1.1` or `%TAG !h! prefix`, with the rest of the line.
    #[inline(never)]
    fn scan_directive(&mut self) -> Result<TokenKind<'a>, Error> {
        const CTX: &str = "while scanning a directive";
        let start = self.mark;
        self.skip_ascii(1);
        let name_start = self.pos;
        while is_alpha(self.cur()) {
            self.skip_ascii(1);
        }
        let name = self.slice(name_start, self.pos);
        if name.is_empty() {
            return Err(self.error_ctx(CTX, start, "could not find expected directive name"));
        }
        if !self.is_blankz_at(self.pos) {
            return Err(self.error_ctx(CTX, start, "found unexpected non-alphabetical character"));
        }
        let kind = match name {
            "YAML" => {
                self.skip_blanks();
                let major = self.scan_version_number(start)?;
                if self.cur() != b'.' {
                    return Err(self.error_ctx(
                        "while scanning a %YAML directive",
                        start,
                        "did not find expected digit or '.' character",
                    ));
                }
                self.skip_ascii(1);
                let minor = self.scan_version_number(start)?;
                TokenKind::VersionDirective { major, minor }
            }
            "TAG" => {
                const TCTX: &str = "while scanning a %TAG directive";
                self.skip_blanks();
                let handle = self.scan_tag_handle(true, start)?;
                if !self.is_blank_at(self.pos) {
                    return Err(self.error_ctx(TCTX, start, "did not find expected whitespace"));
                }
                self.skip_blanks();
                let prefix = self.scan_tag_uri(true, None, start)?;
                if !self.is_blankz_at(self.pos) {
                    return Err(self.error_ctx(
                        TCTX,
                        start,
                        "did not find expected whitespace or line break",
                    ));
                }
                TokenKind::TagDirective(Box::new((Cow::Borrowed(handle), prefix)))
            }
            _ => return Err(self.error_ctx(CTX, start, "found unknown directive name")),
        };
        self.skip_blanks();
        if self.cur() == b'#' {
            while !self.is_breakz_at(self.pos) {
                self.skip();
            }
        }
        if !self.is_breakz_at(self.pos) {
            return Err(self.error_ctx(CTX, start, "did not find expected comment or line break"));
        }
        self.skip_line();
        Ok(kind)
    }

    fn scan_version_number(&mut self, start: Mark) -> Result<u32, Error> {
        const CTX: &str = "while scanning a %YAML directive";
        let mut value = 0u32;
        let mut length = 0;
        while self.cur().is_ascii_digit() {
            length += 1;
            if length > 2 {
                return Err(self.error_ctx(CTX, start, "found extremely long version number"));
            }
            value = value * 10 + u32::from(self.cur() - b'0');
            self.skip_ascii(1);
        }
        if length == 0 {
            return Err(self.error_ctx(CTX, start, "did not find expected version number"));
        }
        Ok(value)
    }

    #[cold]
    #[inline(never)]
    fn tag_error(&self, directive: bool, start: Mark, problem: &str) -> Error {
        let context = if directive {
            "while parsing a %TAG directive"
        } else {
            "while parsing a tag"
        };
        self.error_ctx(context, start, problem)
    }

    /// `!`, `!!` or `!name!`: the handle part of a tag.
    #[inline(never)]
    fn scan_tag_handle(&mut self, directive: bool, start: Mark) -> Result<&'a str, Error> {
        if self.cur() != b'!' {
            return Err(self.tag_error(directive, start, "did not find expected '!'"));
        }
        let from = self.pos;
        self.skip_ascii(1);
        while is_alpha(self.cur()) {
            self.skip_ascii(1);
        }
        if self.cur() == b'!' {
            self.skip_ascii(1);
        } else if directive && self.pos - from != 1 {
            return Err(self.tag_error(directive, start, "did not find expected '!'"));
        }
        Ok(self.slice(from, self.pos))
    }

    /// The URI part of a tag; `head` is a `!name` that turned out not to be a handle, whose
    /// characters after the `!` start the URI.
    #[inline(never)]
    fn scan_tag_uri(
        &mut self,
        directive: bool,
        head: Option<&'a str>,
        start: Mark,
    ) -> Result<Cow<'a, str>, Error> {
        let head = head.unwrap_or("");
        let mut has_tag = !head.is_empty();
        // Borrowed while there are no escapes: the head's characters are right before ours.
        let from = self.pos - head.len().saturating_sub(1).min(self.pos);
        let mut owned: Option<Vec<u8>> = None;
        while is_uri_char(self.cur()) {
            if self.cur() == b'%' {
                if owned.is_none() {
                    owned = Some(self.slice(from, self.pos).as_bytes().to_vec());
                }
                let mut bytes = Vec::new();
                self.scan_uri_escapes(directive, start, &mut bytes)?;
                if let Some(b) = owned.as_mut() {
                    b.extend_from_slice(&bytes);
                }
            } else {
                if let Some(buf) = owned.as_mut() {
                    buf.push(self.cur());
                }
                self.skip_ascii(1);
            }
            has_tag = true;
        }
        if !has_tag {
            return Err(self.tag_error(directive, start, "did not find expected tag URI"));
        }
        Ok(match owned {
            Some(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
            None => Cow::Borrowed(self.slice(from, self.pos)),
        })
    }

    /// `%XX` escapes of one UTF-8 character in a tag.
    #[inline(never)]
    fn scan_uri_escapes(
        &mut self,
        directive: bool,
        start: Mark,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let mut width = 0usize;
        let mut first = true;
        while first || width > 0 {
            let (h, l) = (
                hex_value(self.at(self.pos + 1)),
                hex_value(self.at(self.pos + 2)),
            );
            let (Some(h), Some(l), b'%') = (h, l, self.cur()) else {
                return Err(self.tag_error(directive, start, "did not find URI escaped octet"));
            };
            let octet = (h * 16 + l) as u8;
            if first {
                width = match octet {
                    o if o & 0x80 == 0 => 1,
                    o if o & 0xE0 == 0xC0 => 2,
                    o if o & 0xF0 == 0xE0 => 3,
                    o if o & 0xF8 == 0xF0 => 4,
                    _ => {
                        return Err(self.tag_error(
                            directive,
                            start,
                            "found an incorrect leading UTF-8 octet",
                        ))
                    }
                };
                first = false;
            } else if octet & 0xC0 != 0x80 {
                return Err(self.tag_error(
                    directive,
                    start,
                    "found an incorrect trailing UTF-8 octet",
                ));
            }
            out.push(octet);
            self.skip_ascii(3);
            width -= 1;
        }
        Ok(())
    }

    #[inline(never)]
    fn scan_tag(&mut self) -> Result<TokenKind<'a>, Error> {
        let start = self.mark;
        let (handle, suffix) = if self.at(self.pos + 1) == b'<' {
            self.skip_ascii(2);
            let suffix = self.scan_tag_uri(false, None, start)?;
            if self.cur() != b'>' {
                return Err(self.error_ctx(
                    "while scanning a tag",
                    start,
                    "did not find the expected '>'",
                ));
            }
            self.skip_ascii(1);
            (Cow::Borrowed(""), suffix)
        } else {
            let handle = self.scan_tag_handle(false, start)?;
            if handle.len() > 1 && handle.ends_with('!') {
                (
                    Cow::Borrowed(handle),
                    self.scan_tag_uri(false, None, start)?,
                )
            } else {
                let suffix = self.scan_tag_uri(false, Some(handle), start)?;
                if suffix.is_empty() {
                    // The lone '!' non-specific tag.
                    (Cow::Borrowed(""), Cow::Borrowed("!"))
                } else {
                    (Cow::Borrowed("!"), suffix)
                }
            }
        };
        if !self.is_blankz_at(self.pos) {
            return Err(self.error_ctx(
                "while scanning a tag",
                start,
                "did not find expected whitespace or line break",
            ));
        }
        Ok(TokenKind::Tag(Box::new((handle, suffix))))
    }

    /// A literal (`|`) or folded (`>`) block scalar, with chomping and indentation indicators.
    #[inline(never)]
    fn scan_block_scalar(&mut self, literal: bool) -> Result<(), Error> {
        const CTX: &str = "while scanning a block scalar";
        let start = self.mark;
        self.skip_ascii(1);

        let mut chomping = 0i8;
        let mut increment = 0usize;
        let c = self.cur();
        if c == b'+' || c == b'-' {
            chomping = if c == b'+' { 1 } else { -1 };
            self.skip_ascii(1);
            if self.cur().is_ascii_digit() {
                if self.cur() == b'0' {
                    return Err(self.error_ctx(
                        CTX,
                        start,
                        "found an indentation indicator equal to 0",
                    ));
                }
                increment = usize::from(self.cur() - b'0');
                self.skip_ascii(1);
            }
        } else if c.is_ascii_digit() {
            if c == b'0' {
                return Err(self.error_ctx(
                    CTX,
                    start,
                    "found an indentation indicator equal to 0",
                ));
            }
            increment = usize::from(c - b'0');
            self.skip_ascii(1);
            let c = self.cur();
            if c == b'+' || c == b'-' {
                chomping = if c == b'+' { 1 } else { -1 };
                self.skip_ascii(1);
            }
        }

        self.skip_blanks();
        if self.cur() == b'#' {
            while !self.is_breakz_at(self.pos) {
                self.skip();
            }
        }
        if !self.is_breakz_at(self.pos) {
            return Err(self.error_ctx(CTX, start, "did not find expected comment or line break"));
        }
        self.skip_line();

        let mut indent = 0usize;
        if increment > 0 {
            indent = if self.indent >= 0 {
                self.indent as usize + increment
            } else {
                increment
            };
        }

        let mut s = String::new();
        let mut leading_break = Breaks::default();
        let mut trailing_breaks = Breaks::default();
        self.scan_block_scalar_breaks(&mut indent, &mut trailing_breaks, start)?;

        let mut leading_blank = false;
        while self.mark.column as usize == indent && !self.is_z_at(self.pos) {
            let trailing_blank = self.is_blank_at(self.pos);
            if !literal && !leading_blank && !trailing_blank && leading_break.starts_with_lf() {
                if trailing_breaks.is_empty() {
                    s.push(' ');
                }
            } else {
                leading_break.append_to(&mut s);
            }
            leading_break.clear();
            trailing_breaks.append_to(&mut s);
            trailing_breaks.clear();
            leading_blank = self.is_blank_at(self.pos);

            // The rest of the line, as it is.
            let from = self.pos;
            let mut ascii = true;
            while !self.is_breakz_at(self.pos) {
                ascii &= self.cur() < 0x80;
                self.pos += utf8_width(self.cur());
            }
            let to = self.pos;
            self.pos = from;
            self.advance_to(to, ascii);
            s.push_str(self.slice(from, to));

            self.read_line(&mut leading_break);
            self.scan_block_scalar_breaks(&mut indent, &mut trailing_breaks, start)?;
        }

        if chomping != -1 {
            leading_break.append_to(&mut s);
        }
        if chomping == 1 {
            trailing_breaks.append_to(&mut s);
        }
        let style = if literal {
            ScalarStyle::Literal
        } else {
            ScalarStyle::Folded
        };
        self.push_token(
            TokenKind::Scalar {
                value: Cow::Owned(s),
                style,
            },
            start,
        );
        Ok(())
    }

    /// The indentation and empty lines before a block scalar's next content line; finds the
    /// indentation from the first content line when it was not given.
    #[inline(never)]
    fn scan_block_scalar_breaks(
        &mut self,
        indent: &mut usize,
        breaks: &mut Breaks,
        start: Mark,
    ) -> Result<(), Error> {
        let mut max_indent = 0usize;
        loop {
            while (*indent == 0 || (self.mark.column as usize) < *indent) && self.cur() == b' ' {
                self.skip_ascii(1);
            }
            max_indent = max_indent.max(self.mark.column as usize);
            if (*indent == 0 || (self.mark.column as usize) < *indent) && self.cur() == b'\t' {
                return Err(self.error_ctx(
                    "while scanning a block scalar",
                    start,
                    "found a tab character where an indentation space is expected",
                ));
            }
            if !self.is_break_at(self.pos) {
                break;
            }
            self.read_line(breaks);
        }
        if *indent == 0 {
            let parent = if self.indent < 0 {
                0
            } else {
                self.indent as usize + 1
            };
            *indent = max_indent.max(parent).max(1);
        }
        Ok(())
    }

    /// A single- or double-quoted scalar.
    #[inline(never)]
    fn scan_flow_scalar(&mut self, single: bool) -> Result<(), Error> {
        const CTX: &str = "while scanning a quoted scalar";
        let start = self.mark;
        self.skip_ascii(1);
        let content_start = self.pos;
        let quote = if single { b'\'' } else { b'"' };
        // While `owned` is `None` the value is exactly `src[content_start..slice_end]`.
        let mut owned: Option<String> = None;
        let mut slice_end = content_start;
        let mut leading_break = Breaks::default();
        let mut trailing_breaks = Breaks::default();

        loop {
            if self.mark.column == 0 {
                let c = self.cur();
                if (c == b'-' || c == b'.')
                    && self.at(self.pos + 1) == c
                    && self.at(self.pos + 2) == c
                    && self.is_blankz_at(self.pos + 3)
                {
                    return Err(self.error_ctx(CTX, start, "found unexpected document indicator"));
                }
            }
            if self.is_z_at(self.pos) {
                return Err(self.error_ctx(CTX, start, "found unexpected end of stream"));
            }

            let mut leading_blanks = false;
            while !self.is_blankz_at(self.pos) {
                let c = self.cur();
                if c == quote {
                    if single && self.at(self.pos + 1) == b'\'' {
                        self.owned(&mut owned, content_start, slice_end).push('\'');
                        self.skip_ascii(2);
                        continue;
                    }
                    break;
                }
                if !single && c == b'\\' {
                    if self.is_break_at(self.pos + 1) {
                        self.owned(&mut owned, content_start, slice_end);
                        self.skip_ascii(1);
                        self.skip_line();
                        leading_blanks = true;
                        break;
                    }
                    let mut s = std::mem::take(self.owned(&mut owned, content_start, slice_end));
                    let r = self.scan_escape(start, &mut s);
                    owned = Some(s);
                    r?;
                    continue;
                }
                // A run of ordinary characters.
                let from = self.pos;
                let mut p = self.pos;
                let mut ascii = true;
                loop {
                    let b = self.at(p);
                    if QUOTED_STOPS.get(b as usize).copied().unwrap_or(true) {
                        if (b == 0xC2 || b == 0xE2) && !self.is_break_at(p) {
                            ascii = false;
                            p += utf8_width(b);
                            continue;
                        }
                        if p == from && b != 0 && b != quote && (single || b != b'\\') {
                            // The other kind of quote (or a backslash in single quotes).
                            p += 1;
                            continue;
                        }
                        break;
                    }
                    ascii &= b < 0x80;
                    p += 1;
                }
                if p == from {
                    break;
                }
                self.advance_to(p, ascii);
                match owned.as_mut() {
                    Some(s) => s.push_str(self.src.get(from..p).unwrap_or("")),
                    None => slice_end = p,
                }
            }

            if self.cur() == quote {
                break;
            }

            // Blanks and line breaks.
            let mut ws: Option<(usize, usize)> = None;
            while self.is_blank_at(self.pos) || self.is_break_at(self.pos) {
                if self.is_blank_at(self.pos) {
                    if !leading_blanks {
                        let from = ws.map_or(self.pos, |w| w.0);
                        ws = Some((from, self.pos + 1));
                    }
                    self.skip_ascii(1);
                } else {
                    self.owned(&mut owned, content_start, slice_end);
                    if !leading_blanks {
                        ws = None;
                        self.read_line(&mut leading_break);
                        leading_blanks = true;
                    } else {
                        self.read_line(&mut trailing_breaks);
                    }
                }
            }

            if leading_blanks {
                let s = self.owned(&mut owned, content_start, slice_end);
                if leading_break.starts_with_lf() {
                    if trailing_breaks.is_empty() {
                        s.push(' ');
                    } else {
                        trailing_breaks.append_to(s);
                    }
                } else {
                    leading_break.append_to(s);
                    trailing_breaks.append_to(s);
                }
                leading_break.clear();
                trailing_breaks.clear();
            } else if let Some((from, to)) = ws {
                match owned.as_mut() {
                    Some(s) => s.push_str(self.src.get(from..to).unwrap_or("")),
                    None => slice_end = to,
                }
            }
        }

        let content_end = slice_end;
        self.skip_ascii(1);
        let value = match owned {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(self.slice(content_start, content_end)),
        };
        let style = if single {
            ScalarStyle::SingleQuoted
        } else {
            ScalarStyle::DoubleQuoted
        };
        self.push_key_candidate(TokenKind::Scalar { value, style }, start);
        Ok(())
    }

    /// Switches a scalar being scanned from "a slice of the text" to an owned string.
    fn owned<'s>(&self, owned: &'s mut Option<String>, from: usize, to: usize) -> &'s mut String {
        owned.get_or_insert_with(|| self.src.get(from..to).unwrap_or("").to_owned())
    }

    /// One backslash escape of a double-quoted scalar (go-yaml's set).
    #[inline(never)]
    fn scan_escape(&mut self, start: Mark, s: &mut String) -> Result<(), Error> {
        const CTX: &str = "while parsing a quoted scalar";
        let code_length = match self.at(self.pos + 1) {
            b'0' => {
                s.push('\0');
                0
            }
            b'a' => {
                s.push('\x07');
                0
            }
            b'b' => {
                s.push('\x08');
                0
            }
            b't' | b'\t' => {
                s.push('\t');
                0
            }
            b'n' => {
                s.push('\n');
                0
            }
            b'v' => {
                s.push('\x0B');
                0
            }
            b'f' => {
                s.push('\x0C');
                0
            }
            b'r' => {
                s.push('\r');
                0
            }
            b'e' => {
                s.push('\x1B');
                0
            }
            b' ' => {
                s.push(' ');
                0
            }
            b'"' => {
                s.push('"');
                0
            }
            b'\'' => {
                s.push('\'');
                0
            }
            b'\\' => {
                s.push('\\');
                0
            }
            b'N' => {
                s.push('\u{85}');
                0
            }
            b'_' => {
                s.push('\u{A0}');
                0
            }
            b'L' => {
                s.push('\u{2028}');
                0
            }
            b'P' => {
                s.push('\u{2029}');
                0
            }
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            _ => return Err(self.error_ctx(CTX, start, "found unknown escape character")),
        };
        self.skip_ascii(2);
        if code_length > 0 {
            let mut value: u32 = 0;
            for k in 0..code_length {
                match hex_value(self.at(self.pos + k)) {
                    Some(d) => value = (value << 4) | d,
                    None => {
                        return Err(self.error_ctx(
                            CTX,
                            start,
                            "did not find expected hexdecimal number",
                        ))
                    }
                }
            }
            match char::from_u32(value) {
                Some(ch) => s.push(ch),
                None => {
                    return Err(self.error_ctx(
                        CTX,
                        start,
                        "found invalid Unicode character escape code",
                    ))
                }
            }
            self.skip_ascii(code_length);
        }
        Ok(())
    }

    /// A plain scalar, possibly over several lines (folded into spaces).
    fn scan_plain_scalar(&mut self) -> Result<(), Error> {
        let indent = self.indent + 1;
        let start = self.mark;
        let content_start = self.pos;
        // End of the content so far while it is still exactly a slice of the text.
        let mut slice_end = self.pos;
        let mut owned: Option<String> = None;
        let mut leading_blanks = false;
        let mut leading_break = Breaks::default();
        let mut trailing_breaks = Breaks::default();
        let mut ws_from = 0usize;
        let mut ws_to = 0usize;
        let mut ws_pending = false;
        let stops = if self.flow_level > 0 {
            &PLAIN_STOPS_FLOW
        } else {
            &PLAIN_STOPS_BLOCK
        };

        loop {
            if self.mark.column == 0 {
                let c = self.cur();
                if (c == b'-' || c == b'.')
                    && self.at(self.pos + 1) == c
                    && self.at(self.pos + 2) == c
                    && self.is_blankz_at(self.pos + 3)
                {
                    break;
                }
            }
            if self.cur() == b'#' {
                break;
            }

            let mut first = true;
            while !self.is_blankz_at(self.pos) {
                // Find the run of content characters: plain ASCII in a tight loop, then a
                // closer look at whatever stopped it.
                let from = self.pos;
                let mut p = self.pos;
                let mut ascii = true;
                let bytes = self.bytes;
                loop {
                    while let Some(&b) = bytes.get(p) {
                        if is_stop(stops, b) {
                            break;
                        }
                        p += 1;
                    }
                    let b = self.at(p);
                    if b == b':' {
                        if self.is_blankz_at(p + 1) {
                            break;
                        }
                        p += 1;
                    } else if b >= 0x80 {
                        if self.is_break_at(p) {
                            break;
                        }
                        ascii = false;
                        p += utf8_width(b);
                    } else {
                        break;
                    }
                }
                if p == from {
                    // A ':' before a blank, or a flow indicator: the scalar ends here.
                    break;
                }
                if first && (leading_blanks || ws_pending) {
                    if leading_blanks {
                        let s = owned.get_or_insert_with(|| {
                            self.src
                                .get(content_start..slice_end)
                                .unwrap_or("")
                                .to_owned()
                        });
                        if leading_break.starts_with_lf() {
                            if trailing_breaks.is_empty() {
                                s.push(' ');
                            } else {
                                trailing_breaks.append_to(s);
                            }
                        } else {
                            leading_break.append_to(s);
                            trailing_breaks.append_to(s);
                        }
                        trailing_breaks.clear();
                        leading_break.clear();
                        leading_blanks = false;
                    } else if let Some(s) = owned.as_mut() {
                        s.push_str(self.src.get(ws_from..ws_to).unwrap_or(""));
                    }
                    ws_pending = false;
                }
                first = false;
                self.advance_to(p, ascii);
                match owned.as_mut() {
                    Some(s) => s.push_str(self.src.get(from..p).unwrap_or("")),
                    None => slice_end = p,
                }
            }

            if !(self.is_blank_at(self.pos) || self.is_break_at(self.pos)) {
                break;
            }

            while self.is_blank_at(self.pos) || self.is_break_at(self.pos) {
                if leading_blanks && self.cur() == b' ' {
                    // A run of indentation spaces, in one step.
                    let from = self.pos;
                    let n = self
                        .bytes
                        .get(from..)
                        .map_or(0, |r| r.iter().take_while(|&&b| b == b' ').count());
                    self.skip_ascii(n);
                    continue;
                }
                if self.is_blank_at(self.pos) {
                    if leading_blanks && (self.mark.column as isize) < indent && self.cur() == b'\t'
                    {
                        return Err(self.error_ctx(
                            "while scanning a plain scalar",
                            start,
                            "found a tab character that violates indentation",
                        ));
                    }
                    if !leading_blanks {
                        if !ws_pending {
                            ws_from = self.pos;
                            ws_pending = true;
                        }
                        ws_to = self.pos + 1;
                    }
                    self.skip_ascii(1);
                } else if !leading_blanks {
                    ws_pending = false;
                    self.read_line(&mut leading_break);
                    leading_blanks = true;
                } else {
                    self.read_line(&mut trailing_breaks);
                }
            }

            if self.flow_level == 0 && (self.mark.column as isize) < indent {
                break;
            }
        }

        if leading_blanks {
            self.simple_key_allowed = true;
        }
        let value = match owned {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(self.slice(content_start, slice_end)),
        };
        self.push_key_candidate(
            TokenKind::Scalar {
                value,
                style: ScalarStyle::Plain,
            },
            start,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokens of `text` (after STREAM-START, up to STREAM-END), or the first error.
    fn tokens(text: &str) -> Result<Vec<TokenKind<'_>>, Error> {
        let mut s = Scanner::new(text, Origin { line: 1, column: 0 });
        let mut out = Vec::new();
        loop {
            let t = s.take()?;
            match t.kind {
                TokenKind::StreamStart => {}
                TokenKind::StreamEnd => return Ok(out),
                k => out.push(k),
            }
        }
    }

    fn scalars(text: &str) -> Result<Vec<String>, Error> {
        Ok(tokens(text)?
            .into_iter()
            .filter_map(|t| match t {
                TokenKind::Scalar { value, .. } | TokenKind::KeyScalar { value, .. } => {
                    Some(value.into_owned())
                }
                _ => None,
            })
            .collect())
    }

    fn plain(text: &str) -> Cow<'_, str> {
        match tokens(text).ok().and_then(|t| t.into_iter().next()) {
            Some(TokenKind::Scalar { value, .. }) => value,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn block_mapping_tokens() {
        use TokenKind::*;
        let t = tokens("a: b\nc:\n  - d\n").unwrap();
        assert!(matches!(
            t.as_slice(),
            [
                BlockMappingStart,
                KeyScalar { .. },
                Scalar { .. },
                KeyScalar { .. },
                BlockSequenceStart,
                BlockEntry,
                Scalar { .. },
                BlockEnd,
                BlockEnd
            ]
        ));
    }

    #[test]
    fn plain_scalars_borrow_unless_folded() {
        assert!(matches!(plain("hello world"), Cow::Borrowed("hello world")));
        assert!(matches!(plain("a\tb # c"), Cow::Borrowed("a\tb")));
        assert_eq!(plain("a\n  b\n\n  c\n"), "a b\nc");
        assert!(matches!(plain("a\n  b"), Cow::Owned(_)));
        assert_eq!(plain("a#b"), "a#b");
        assert_eq!(scalars("é: x").unwrap(), vec!["é", "x"]);
    }

    #[test]
    fn flow_plain_scalars_follow_go_yaml() {
        assert_eq!(scalars("[001:db8::]").unwrap(), vec!["001:db8::"]);
        assert_eq!(scalars("[a:, b]").unwrap(), vec!["a:", "b"]);
        assert_eq!(scalars("{a:b}").unwrap(), vec!["a:b"]);
        // '?' ends a flow plain scalar and starts a key.
        let t = tokens("[a?b]").unwrap();
        assert!(t.contains(&TokenKind::Key));
        // In block context an IPv6 address ending in ':' becomes a key.
        assert_eq!(scalars("- 001:db8::\n").unwrap(), vec!["001:db8:"]);
    }

    #[test]
    fn quoted_scalars_and_escapes() {
        assert!(matches!(plain("'it''s'"), Cow::Owned(s) if s == "it's"));
        assert!(matches!(plain("'plain text'"), Cow::Borrowed("plain text")));
        assert!(matches!(
            plain("\"no escapes\""),
            Cow::Borrowed("no escapes")
        ));
        assert_eq!(
            plain(r#""\t\n\x41\u00e9\U0001F600\'\"\\\0\ \_\N\L\P""#),
            "\t\nAé😀'\"\\\0 \u{a0}\u{85}\u{2028}\u{2029}"
        );
        assert!(tokens(r#""\/""#).is_err());
        assert!(tokens(r#""\uD800""#).is_err());
        assert!(tokens(r#""\xZZ""#).is_err());
        assert_eq!(plain("\"a\\\n   b\""), "ab");
        assert_eq!(plain("\"a \n\n  b \""), "a\nb ");
        assert_eq!(plain("'a\n  b'"), "a b");
        assert!(tokens("\"unterminated").is_err());
        assert!(tokens("'x\n---\n'").is_err());
    }

    #[test]
    fn block_scalars_chomping_and_indentation() {
        assert_eq!(scalars("|\n  a\n  b\n\n").unwrap(), vec!["a\nb\n"]);
        assert_eq!(scalars("|-\n  a\n\n").unwrap(), vec!["a"]);
        assert_eq!(scalars("|+\n  a\n\n").unwrap(), vec!["a\n\n"]);
        assert_eq!(scalars(">\n  a\n  b\n\n  c\n").unwrap(), vec!["a b\nc\n"]);
        assert_eq!(
            scalars(">\n  a\n   indented\n  b\n").unwrap(),
            vec!["a\n indented\nb\n"]
        );
        assert_eq!(scalars("|2\n   x\n").unwrap(), vec![" x\n"]);
        assert_eq!(scalars("|1-\n  x\n").unwrap(), vec![" x"]);
        assert_eq!(scalars("| # comment\n  x\n").unwrap(), vec!["x\n"]);
        // No final line break in the chunk: kubectl adds one.
        assert_eq!(scalars("|\n  x").unwrap(), vec!["x\n"]);
        assert!(tokens("|0\n x\n").is_err());
        assert!(tokens("| x\n").is_err());
        assert!(tokens("|\n\tx\n").is_err());
    }

    #[test]
    fn comments_tabs_and_breaks() {
        assert_eq!(scalars("# c\na: b # c\n# d\n").unwrap(), vec!["a", "b"]);
        assert_eq!(scalars("a:\tb\n").unwrap(), vec!["a", "b"]);
        assert!(tokens("a:\n\tb: 1\n").is_err());
        assert!(tokens("-\tb\n").is_err());
        assert_eq!(scalars("[a,\tb]").unwrap(), vec!["a", "b"]);
        // CR LF and lone CR are breaks; CR CR LF is one (kubectl drops the CR before LF).
        assert_eq!(
            scalars("a: 1\r\nb: 2\rc: 3").unwrap(),
            vec!["a", "1", "b", "2", "c", "3"]
        );
        assert_eq!(plain("x\r\r\n  y"), "x y");
        // LS is a line break (YAML 1.1).
        assert!(tokens("a: x\u{2028}y: z").is_ok());
    }

    #[test]
    fn document_markers_and_directives() {
        use TokenKind::*;
        let t = tokens("--- a\n...\n").unwrap();
        assert!(matches!(
            t.as_slice(),
            [DocumentStart, Scalar { .. }, DocumentEnd]
        ));
        assert_eq!(scalars("---a").unwrap(), vec!["---a"]);
        let t = tokens("%YAML 1.1\n%TAG !e! tag:e.com:\n---\n").unwrap();
        assert!(matches!(
            t.as_slice(),
            [
                VersionDirective { major: 1, minor: 1 },
                TagDirective(_),
                DocumentStart
            ]
        ));
        assert!(tokens("%YAML 1.123\n").is_err());
        assert!(tokens("%FOO\n").is_err());
    }

    #[test]
    fn anchors_aliases_and_tags() {
        let t = tokens("&a-1 x: *a-1").unwrap();
        assert!(t.contains(&TokenKind::Anchor("a-1")));
        assert!(t.contains(&TokenKind::Alias("a-1")));
        assert!(tokens("*.example.com").is_err());
        let tag = |s: &str| match tokens(s).ok().and_then(|t| t.into_iter().next()) {
            Some(TokenKind::Tag(b)) => Some((b.0.into_owned(), b.1.into_owned())),
            _ => None,
        };
        assert_eq!(tag("!!str x"), Some(("!!".into(), "str".into())));
        assert_eq!(tag("!foo x"), Some(("!".into(), "foo".into())));
        assert_eq!(tag("! x"), Some(("".into(), "!".into())));
        assert_eq!(
            tag("!<tag:a,2000:b> x"),
            Some(("".into(), "tag:a,2000:b".into()))
        );
        assert_eq!(tag("!!%69nt 1"), Some(("!!".into(), "int".into())));
        assert!(tokens("!! x").is_err());
        assert!(tokens("!<> x").is_err());
    }

    #[test]
    fn simple_key_length_limit() {
        let ok = format!("{}: 1", "k".repeat(1024));
        assert!(tokens(&ok).is_ok());
        let long = format!("{}: 1", "k".repeat(1025));
        assert!(tokens(&long).is_err());
    }

    #[test]
    fn depth_limits() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(tokens(&deep).is_err());
        let mut block = String::new();
        for i in 0..=MAX_DEPTH {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        assert!(tokens(&block).is_err());
    }

    #[test]
    fn required_key_without_colon() {
        assert!(tokens("a: 1\nb\nc: 2\n").is_err());
    }
}
