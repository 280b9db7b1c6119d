//! [`Node`]: one value of a document, held compactly as a flat "tape" of items.
//!
//! A node is what go-yaml's decoder would see: aliases already expanded, tags already applied,
//! scalars resolved (`yes` is `true`), and each mapping still in document order with its
//! duplicate keys and merge keys (`<<`). Turning that into JSON is done lazily, by
//! [`Node::to_value`] or by the serde deserializer in `de.rs`, with YAMLToJSON's rules:
//!
//! * keys are converted to strings (`1` → `"1"`, `on` → `"true"`, floats as float32 `%g`);
//!   null and uint64 keys are errors;
//! * within a mapping, entries are taken in go-yaml's order: a merge key inserts the entries of
//!   its mapping (or of each mapping of its sequence, the last first so that earlier ones win)
//!   at its place, and a later entry replaces an earlier one with the same key. Keys that are
//!   different in YAML but the same after conversion (`1` and `"1"`) keep the later one (go-yaml
//!   leaves that to Go's map order; we pick a fixed answer);
//! * the surviving entries are visited sorted by key, as `encoding/json` writes them, so that
//!   order-sensitive consumers see what they would see reading YAMLToJSON's output;
//! * only surviving values are converted, so an overwritten `.inf` is no error (as in go-yaml).
//!
//! The tape: every value is one [`Ev`]; a collection's item is followed by its children and
//! records its `span` (how many items it covers), so skipping a value is O(1) and a mapping's
//! keys can be walked in O(keys). Strings borrowed from the text stay borrowed
//! ([`Text::Src`]); the others live in the tape's `arena`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::error::{Error, Pos};
use super::resolve::{float_key, json_number_of_float};

/// A string of the tape: borrowed from the text, or in the tape's arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Text<'a> {
    Src(&'a str),
    Arena { start: u32, len: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Item<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// A YAML float: written as `encoding/json` writes a float64 (integral ones as integers).
    Float(f64),
    /// A float read from a JSON document: kept as serde_json reads it.
    JsonFloat(f64),
    Str(Text<'a>),
    /// A merge key `<<` (only ever in key position).
    Merge,
    /// `span`: number of items of the sequence including itself; `len`: number of elements.
    Seq {
        span: u32,
        len: u32,
    },
    /// `len`: number of key/value pairs as written (before merges and duplicates).
    Map {
        span: u32,
        len: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ev<'a> {
    pub item: Item<'a>,
    pub line: u32,
    pub column: u32,
}

impl Ev<'_> {
    pub(crate) fn pos(&self) -> Pos {
        Pos {
            line: self.line as usize,
            column: self.column as usize,
        }
    }

    /// Number of tape items this value covers.
    pub(crate) fn span(&self) -> usize {
        match self.item {
            Item::Seq { span, .. } | Item::Map { span, .. } => span as usize,
            _ => 1,
        }
    }
}

/// `a < b` for the short strings keys are, without a call to `memcmp`.
#[inline]
pub(crate) fn key_less(a: &str, b: &str) -> bool {
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// Most mappings have few keys: up to this many are sorted on the stack.
pub(crate) const SMALL: usize = 16;

/// The surviving entries of a small mapping: (key index, value index), sorted by key. Kept
/// small (it sits in a stack frame per level of nesting while a mapping is decoded).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SmallEntries {
    pub buf: [(u32, u32); SMALL],
    pub len: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tape<'a> {
    pub evs: Vec<Ev<'a>>,
    pub arena: String,
}

impl<'a> Tape<'a> {
    pub(crate) fn text<'s>(&'s self, t: Text<'a>) -> &'s str {
        match t {
            Text::Src(s) => s,
            Text::Arena { start, len } => {
                let start = start as usize;
                self.arena.get(start..start + len as usize).unwrap_or("")
            }
        }
    }

    pub(crate) fn ev(&self, i: usize) -> Result<&Ev<'a>, Error> {
        self.evs
            .get(i)
            .ok_or_else(|| Error::msg("internal error: node index out of range"))
    }

    /// Index just past the value at `i`.
    pub(crate) fn next(&self, i: usize) -> usize {
        i + self.evs.get(i).map_or(1, Ev::span)
    }

    /// Puts `s` in the arena.
    pub(crate) fn intern(&mut self, s: &str) -> Result<Text<'a>, Error> {
        let start = u32::try_from(self.arena.len())
            .map_err(|_| Error::msg("document too large (over 4 GiB of strings)"))?;
        let len = u32::try_from(s.len())
            .map_err(|_| Error::msg("document too large (over 4 GiB of strings)"))?;
        start
            .checked_add(len)
            .ok_or_else(|| Error::msg("document too large (over 4 GiB of strings)"))?;
        self.arena.push_str(s);
        Ok(Text::Arena { start, len })
    }

    /// Copies `src.evs[range]` (a whole value) to the end of this tape, moving arena strings.
    pub(crate) fn copy_from(
        &mut self,
        src: &Tape<'a>,
        from: usize,
        to: usize,
    ) -> Result<(), Error> {
        let slice = src
            .evs
            .get(from..to)
            .ok_or_else(|| Error::msg("internal error: copy out of range"))?;
        self.evs.reserve(slice.len());
        for ev in slice {
            let mut ev = *ev;
            if let Item::Str(t @ Text::Arena { .. }) = ev.item {
                ev.item = Item::Str(self.intern(src.text(t))?);
            }
            self.evs.push(ev);
        }
        Ok(())
    }

    /// Calls `f(key_index, value_index)` for each entry of the mapping at `map` in go-yaml's
    /// order, merge keys expanded in place.
    pub(crate) fn for_each_entry(
        &self,
        map: usize,
        f: &mut dyn FnMut(usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let end = self.next(map);
        let mut k = map + 1;
        while k < end {
            let v = self.next(k);
            if matches!(self.ev(k)?.item, Item::Merge) {
                self.for_each_merged(v, f)?;
            } else {
                f(k, v)?;
            }
            k = self.next(v);
        }
        Ok(())
    }

    /// The entries a merge key's value brings: a mapping's, or each mapping's of a sequence,
    /// the last first (go-yaml applies them backwards so that earlier mappings win).
    fn for_each_merged(
        &self,
        v: usize,
        f: &mut dyn FnMut(usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        match self.ev(v)?.item {
            Item::Map { .. } => self.for_each_entry(v, f),
            Item::Seq { len, .. } => {
                let mut elems = Vec::with_capacity(len as usize);
                let end = self.next(v);
                let mut e = v + 1;
                while e < end {
                    elems.push(e);
                    e = self.next(e);
                }
                for e in elems.into_iter().rev() {
                    self.for_each_entry(e, f)?;
                }
                Ok(())
            }
            _ => Err(Error::at(
                self.ev(v)?.pos(),
                "map merge requires map or sequence of maps as the value",
            )),
        }
    }

    /// A mapping key converted to its JSON string, as sigs.k8s.io/yaml converts it.
    pub(crate) fn key_string<'s>(&'s self, k: usize) -> Result<Cow<'s, str>, Error> {
        let ev = self.ev(k)?;
        match ev.item {
            Item::Str(t) => Ok(Cow::Borrowed(self.text(t))),
            Item::Int(i) => Ok(Cow::Owned(i.to_string())),
            Item::Bool(b) => Ok(Cow::Borrowed(if b { "true" } else { "false" })),
            Item::Float(f) => Ok(Cow::Owned(float_key(f))),
            Item::JsonFloat(f) => Ok(Cow::Owned(f.to_string())),
            Item::Null => Err(Error::at(
                ev.pos(),
                "unsupported map key of type: %!s(<nil>), key: <nil>",
            )),
            Item::UInt(u) => Err(Error::at(
                ev.pos(),
                format!("unsupported map key of type: uint64, key: 0x{u:x}"),
            )),
            Item::Seq { .. } | Item::Map { .. } | Item::Merge => {
                Err(Error::at(ev.pos(), "invalid map key: a collection"))
            }
        }
    }

    /// Whether a mapping can be read straight off the tape: no merge keys, and string keys in
    /// strictly increasing order (so there are no duplicates and the order is JSON's).
    pub(crate) fn map_is_plain(&self, map: usize) -> bool {
        let end = self.next(map);
        let mut k = map + 1;
        let mut prev: Option<&str> = None;
        while k < end {
            let key = match self.evs.get(k).map(|e| e.item) {
                Some(Item::Str(t)) => self.text(t),
                _ => return false,
            };
            if let Some(p) = prev {
                if !key_less(p, key) {
                    return false;
                }
            }
            prev = Some(key);
            k = self.next(self.next(k));
        }
        true
    }

    /// For a small mapping (at most [`SMALL`] pairs, string keys, no merge keys): its
    /// surviving entries as (key, key index, value index), sorted by key, last one wins,
    /// without allocating. `None` otherwise.
    pub(crate) fn small_entries(&self, map: usize) -> Option<SmallEntries> {
        let len = match self.evs.get(map)?.item {
            Item::Map { len, .. } => len as usize,
            _ => return None,
        };
        if len > SMALL {
            return None;
        }
        let key = |k: u32| match self.evs.get(k as usize).map(|x| x.item) {
            Some(Item::Str(t)) => Some(self.text(t)),
            _ => None,
        };
        let mut out = SmallEntries {
            buf: [(0, 0); SMALL],
            len: 0,
        };
        let end = self.next(map);
        let mut k = map + 1;
        while k < end {
            key(u32::try_from(k).ok()?)?;
            let v = self.next(k);
            *out.buf.get_mut(out.len)? = (u32::try_from(k).ok()?, u32::try_from(v).ok()?);
            out.len += 1;
            k = self.next(v);
        }
        let buf = out.buf.get_mut(..out.len)?;
        // Insertion sort: stable, so that equal keys stay in document order and the last one
        // wins below; the fastest for a handful of keys.
        for i in 1..buf.len() {
            let mut j = i;
            while j > 0 {
                let (Some(a), Some(b)) = (buf.get(j - 1), buf.get(j)) else {
                    break;
                };
                if !key_less(key(b.0)?, key(a.0)?) {
                    break;
                }
                buf.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut w: usize = 0;
        for r in 0..buf.len() {
            let e = *buf.get(r)?;
            match w.checked_sub(1).and_then(|l| buf.get(l).copied()) {
                Some(last) if key(last.0) == key(e.0) => *buf.get_mut(w - 1)? = e,
                _ => {
                    *buf.get_mut(w)? = e;
                    w += 1;
                }
            }
        }
        out.len = w;
        Some(out)
    }

    /// The surviving entries of a mapping: keys converted, last one wins, sorted by key.
    pub(crate) fn entries<'s>(
        &'s self,
        map: usize,
    ) -> Result<Vec<(Cow<'s, str>, usize, usize)>, Error> {
        let mut out: Vec<(Cow<'s, str>, usize, usize)> = Vec::new();
        self.for_each_entry(map, &mut |k, v| {
            out.push((self.key_string(k)?, k, v));
            Ok(())
        })?;
        // Stable: entries with the same key stay in go-yaml's order, and the last one wins.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dedup: Vec<(Cow<'s, str>, usize, usize)> = Vec::with_capacity(out.len());
        for e in out {
            match dedup.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => dedup.push(e),
            }
        }
        Ok(dedup)
    }

    /// The JSON value of a scalar item (`None` for a collection).
    fn scalar_value(&self, ev: &Ev<'a>) -> Result<Option<Value>, Error> {
        Ok(Some(match ev.item {
            Item::Null => Value::Null,
            Item::Bool(b) => Value::Bool(b),
            Item::Int(n) => Value::Number(n.into()),
            Item::UInt(n) => Value::Number(n.into()),
            Item::Float(f) => {
                Value::Number(json_number_of_float(f).map_err(|m| Error::at(ev.pos(), m))?)
            }
            Item::JsonFloat(f) => match serde_json::Number::from_f64(f) {
                Some(n) => Value::Number(n),
                None => return Err(Error::at(ev.pos(), "json: unsupported value")),
            },
            Item::Str(t) => Value::String(self.text(t).to_owned()),
            Item::Merge => Value::String("<<".to_owned()),
            Item::Seq { .. } | Item::Map { .. } => return Ok(None),
        }))
    }

    /// The entries of the mapping at `i` to convert: (key, value index), sorted, survivors only.
    fn map_entries(&self, i: usize) -> Result<std::vec::IntoIter<(String, usize)>, Error> {
        let mut out = Vec::new();
        if self.map_is_plain(i) {
            let end = self.next(i);
            let mut k = i + 1;
            while k < end {
                let v = self.next(k);
                out.push((self.key_string(k)?.into_owned(), v));
                k = self.next(v);
            }
        } else {
            out = self
                .entries(i)?
                .into_iter()
                .map(|(key, _, v)| (key.into_owned(), v))
                .collect();
        }
        Ok(out.into_iter())
    }

    /// The JSON value of the item at `i`. Iterative (an explicit stack), so that deep
    /// nesting costs heap rather than call stack.
    pub(crate) fn value(&self, i: usize) -> Result<Value, Error> {
        enum Frame {
            Seq {
                out: Vec<Value>,
                next: usize,
                end: usize,
            },
            Map {
                out: Map<String, Value>,
                rest: std::vec::IntoIter<(String, usize)>,
                key: Option<String>,
            },
        }
        let open = |tape: &Self, i: usize| -> Result<Frame, Error> {
            Ok(match tape.ev(i)?.item {
                Item::Seq { len, .. } => Frame::Seq {
                    out: Vec::with_capacity(len as usize),
                    next: i + 1,
                    end: tape.next(i),
                },
                _ => Frame::Map {
                    out: Map::new(),
                    rest: tape.map_entries(i)?,
                    key: None,
                },
            })
        };
        let root = self.ev(i)?;
        if let Some(v) = self.scalar_value(root)? {
            return Ok(v);
        }
        let mut stack = vec![open(self, i)?];
        loop {
            // The next child of the innermost open collection, or its end.
            let next = match stack.last_mut() {
                Some(Frame::Seq { next, end, .. }) if *next < *end => {
                    let c = *next;
                    *next = self.next(c);
                    Some(c)
                }
                Some(Frame::Map { rest, key, .. }) => match rest.next() {
                    Some((k, v)) => {
                        *key = Some(k);
                        Some(v)
                    }
                    None => None,
                },
                _ => None,
            };
            let done = match next {
                Some(c) => match self.scalar_value(self.ev(c)?)? {
                    Some(v) => v,
                    None => {
                        stack.push(open(self, c)?);
                        continue;
                    }
                },
                None => match stack.pop() {
                    Some(Frame::Seq { out, .. }) => Value::Array(out),
                    Some(Frame::Map { out, .. }) => Value::Object(out),
                    None => return Err(Error::msg("internal error: empty stack")),
                },
            };
            match stack.last_mut() {
                None => return Ok(done),
                Some(Frame::Seq { out, .. }) => out.push(done),
                Some(Frame::Map { out, key, .. }) => {
                    if let Some(k) = key.take() {
                        out.insert(k, done);
                    }
                }
            }
        }
    }

    /// Checks what converting the value at `i` would check (NaN/Inf values, null and uint64
    /// keys among the surviving entries), without building anything. Iterative.
    pub(crate) fn validate(&self, i: usize) -> Result<(), Error> {
        let mut todo = vec![i];
        while let Some(i) = todo.pop() {
            let ev = self.ev(i)?;
            match ev.item {
                Item::Float(f) if !f.is_finite() => {
                    json_number_of_float(f).map_err(|m| Error::at(ev.pos(), m))?;
                }
                Item::Seq { .. } => {
                    let end = self.next(i);
                    let mut e = i + 1;
                    while e < end {
                        todo.push(e);
                        e = self.next(e);
                    }
                }
                Item::Map { .. } => {
                    if self.map_is_plain(i) {
                        let end = self.next(i);
                        let mut k = i + 1;
                        while k < end {
                            let v = self.next(k);
                            todo.push(v);
                            k = self.next(v);
                        }
                    } else {
                        for (_, _, v) in self.entries(i)? {
                            todo.push(v);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The value of `key` in the mapping at `map` if it is a string (merges and duplicates
    /// applied as in [`entries`](Self::entries)).
    pub(crate) fn str_field(&self, map: usize, key: &str) -> Option<&str> {
        if !matches!(self.evs.get(map)?.item, Item::Map { .. }) {
            return None;
        }
        let mut found: Option<usize> = None;
        let _ = self.for_each_entry(map, &mut |k, v| {
            // A key that cannot be converted makes the whole value an error; it matches nothing.
            if self.key_string(k).is_ok_and(|s| s == key) {
                found = Some(v);
            }
            Ok(())
        });
        match self.evs.get(found?)?.item {
            Item::Str(t) => Some(self.text(t)),
            _ => None,
        }
    }
}

/// One value of a document, read and held compactly, ready to be converted.
///
/// Its semantics are exactly the JSON value YAMLToJSON produces for it (see the module docs);
/// use [`to_value`](Node::to_value) for a `serde_json::Value`, or
/// [`deserialize`](Node::deserialize) to decode into a type without building one.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub(crate) tape: Tape<'a>,
}

impl<'a> Node<'a> {
    pub(crate) fn root(&self) -> Option<&Ev<'a>> {
        self.tape.evs.first()
    }

    /// 1-based line of the node's start in the whole text.
    pub fn line(&self) -> usize {
        self.root().map_or(0, |e| e.line as usize)
    }

    /// 1-based column of the node's start.
    pub fn column(&self) -> usize {
        self.root().map_or(0, |e| e.column as usize)
    }

    /// For a mapping: the value of `key` when that value is a string, after merge keys and
    /// last-wins duplicates, keys compared after YAMLToJSON's key conversion. O(keys).
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.tape.str_field(0, key)
    }

    /// Whether the node is a mapping.
    pub fn is_mapping(&self) -> bool {
        matches!(self.root().map(|e| e.item), Some(Item::Map { .. }))
    }

    /// Whether the node is null (`~`, `null`, an empty value).
    pub fn is_null(&self) -> bool {
        matches!(self.root().map(|e| e.item), Some(Item::Null))
    }

    /// The JSON value, exactly as YAMLToJSON followed by `encoding/json` decoding gives it.
    pub fn to_value(&self) -> Result<Value, Error> {
        if self.tape.evs.is_empty() {
            return Ok(Value::Null);
        }
        self.tape.value(0)
    }

    /// Fails exactly where [`to_value`](Node::to_value) fails (a surviving `.inf`, a null or
    /// uint64 key), without building anything: what kubectl refuses in a document whose value
    /// is not otherwise needed.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tape.evs.is_empty() {
            return Ok(());
        }
        self.tape.validate(0)
    }

    /// Decodes the node into `T` straight from the tape, without building a `Value`.
    ///
    /// Whenever it succeeds it gives exactly what `serde_json::from_value::<T>(self.to_value()?)`
    /// gives, and it fails whenever that fails; the one difference is that borrowed strings
    /// (`&'a str`, `Cow<'a, str>` with `#[serde(borrow)]`) can borrow from the text here, where
    /// `from_value` cannot lend them. Errors carry the position of the innermost node involved.
    pub fn deserialize<T: serde::Deserialize<'a>>(&self) -> Result<T, Error> {
        T::deserialize(self.deserializer())
    }

    /// A `serde::Deserializer` over the node (for `serde_path_to_error` and the like).
    pub fn deserializer(&self) -> super::de::NodeDeserializer<'a, '_> {
        super::de::NodeDeserializer::new(&self.tape, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(item: Item<'static>) -> Ev<'static> {
        Ev {
            item,
            line: 1,
            column: 1,
        }
    }

    fn s(x: &'static str) -> Item<'static> {
        Item::Str(Text::Src(x))
    }

    #[test]
    fn merges_apply_in_go_yaml_order_and_last_wins() {
        // {b: 3, <<: {a: 1, b: 2}, c: 4, c: 5}
        let tape = Tape {
            evs: vec![
                ev(Item::Map { span: 13, len: 4 }),
                ev(s("b")),
                ev(Item::Int(3)),
                ev(Item::Merge),
                ev(Item::Map { span: 5, len: 2 }),
                ev(s("a")),
                ev(Item::Int(1)),
                ev(s("b")),
                ev(Item::Int(2)),
                ev(s("c")),
                ev(Item::Int(4)),
                ev(s("c")),
                ev(Item::Int(5)),
            ],
            arena: String::new(),
        };
        let node = Node { tape };
        assert_eq!(
            node.to_value(),
            Ok(serde_json::json!({"a": 1, "b": 2, "c": 5}))
        );
        assert_eq!(node.str_field("b"), None);
    }

    #[test]
    fn keys_convert_like_sigs_yaml() {
        let tape = Tape {
            evs: vec![
                ev(Item::Map { span: 9, len: 4 }),
                ev(Item::Int(511)),
                ev(s("x")),
                ev(Item::Bool(true)),
                ev(s("y")),
                ev(Item::Float(1234567.0)),
                ev(s("z")),
                ev(Item::Float(1e3)),
                ev(s("w")),
            ],
            arena: String::new(),
        };
        let node = Node { tape };
        assert_eq!(
            node.to_value(),
            Ok(serde_json::json!({"511": "x", "true": "y", "1.234567e+06": "z", "1000": "w"}))
        );
        assert_eq!(node.str_field("true"), Some("y"));
    }

    #[test]
    fn only_surviving_values_are_converted() {
        let tape = Tape {
            evs: vec![
                ev(Item::Map { span: 5, len: 2 }),
                ev(s("a")),
                ev(Item::Float(f64::INFINITY)),
                ev(s("a")),
                ev(Item::Int(1)),
            ],
            arena: String::new(),
        };
        assert_eq!(Node { tape }.to_value(), Ok(serde_json::json!({"a": 1})));
    }

    #[test]
    fn null_and_uint64_keys_fail() {
        for key in [Item::Null, Item::UInt(u64::MAX)] {
            let tape = Tape {
                evs: vec![ev(Item::Map { span: 3, len: 1 }), ev(key), ev(s("x"))],
                arena: String::new(),
            };
            assert!(Node { tape }.to_value().is_err());
        }
    }
}
