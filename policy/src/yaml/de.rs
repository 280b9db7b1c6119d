//! Typed decoding straight from a node's tape: a `serde::Deserializer` that behaves as
//! `serde_json::Value`'s deserializer does on the value YAMLToJSON would produce.
//!
//! That is the contract of [`Node::deserialize`](super::Node::deserialize): whatever it returns
//! `Ok` for is what `serde_json::from_value(node.to_value()?)` returns, and it fails where that
//! fails. So this file mirrors `serde_json::value::de` decision by decision: which `visit_*` a
//! value calls (non-negative integers `visit_u64`, negative `visit_i64`, YAML floats as the JSON
//! number YAMLToJSON writes), `invalid_type` where `Value` refuses, the "fewer elements" checks
//! after sequences and maps, enums as a string or a single-key map, map keys parsed as numbers
//! or booleans on demand (serde_json's `MapKeyDeserializer`), and `deserialize_ignored_any`
//! still checking what conversion would check (an ignored `.inf` is an error for YAMLToJSON).
//! Mappings are visited with their surviving entries sorted by key, as `Value`'s map would
//! be; a mapping whose string keys are already strictly sorted (the usual `kubectl get -o yaml`
//! output) is walked directly, others go through a small sorted list.
//!
//! The one intended difference: strings borrowed from the text are lent with
//! `visit_borrowed_str`, so `&'a str` and `Cow<'a, str>` fields can borrow.

use std::borrow::Cow;

use serde::de::{
    self, value::BorrowedStrDeserializer, value::StrDeserializer, value::StringDeserializer,
    DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

use super::error::{Error, Pos};
use super::node::{Item, Tape, Text};
use super::resolve::json_number_of_float;

/// A `serde::Deserializer` over one value of a node; see the module docs.
#[derive(Clone, Copy)]
pub struct NodeDeserializer<'a, 's> {
    tape: &'s Tape<'a>,
    idx: usize,
}

/// A number as serde_json's `Value` holds it.
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl<'a, 's> NodeDeserializer<'a, 's> {
    pub(crate) fn new(tape: &'s Tape<'a>, idx: usize) -> Self {
        NodeDeserializer { tape, idx }
    }

    fn item(&self) -> Result<Item<'a>, Error> {
        Ok(self.tape.ev(self.idx)?.item)
    }

    fn pos(&self) -> Pos {
        self.tape
            .evs
            .get(self.idx)
            .map(|e| e.pos())
            .unwrap_or_default()
    }

    /// Gives an error this node's position unless it has one (computed only on error).
    #[cold]
    fn locate(&self, e: Error) -> Error {
        e.or_at(self.pos())
    }

    fn num(&self, item: Item<'a>) -> Result<Option<Num>, Error> {
        Ok(match item {
            Item::Int(i) if i >= 0 => Some(Num::U(i as u64)),
            Item::Int(i) => Some(Num::I(i)),
            Item::UInt(u) => Some(Num::U(u)),
            Item::JsonFloat(f) => Some(Num::F(f)),
            Item::Float(f) => {
                let n = json_number_of_float(f).map_err(|m| Error::at(self.pos(), m))?;
                Some(if let Some(u) = n.as_u64() {
                    Num::U(u)
                } else if let Some(i) = n.as_i64() {
                    Num::I(i)
                } else {
                    Num::F(n.as_f64().unwrap_or(f))
                })
            }
            _ => None,
        })
    }

    /// What the value is, for `invalid_type` messages (as `Value::unexpected`).
    fn unexpected(&self) -> Unexpected<'s> {
        match self.item() {
            Ok(Item::Null) | Err(_) => Unexpected::Unit,
            Ok(Item::Bool(b)) => Unexpected::Bool(b),
            Ok(Item::Int(i)) if i >= 0 => Unexpected::Unsigned(i as u64),
            Ok(Item::Int(i)) => Unexpected::Signed(i),
            Ok(Item::UInt(u)) => Unexpected::Unsigned(u),
            Ok(Item::JsonFloat(f)) => Unexpected::Float(f),
            Ok(item @ Item::Float(f)) => match self.num(item) {
                Ok(Some(Num::U(u))) => Unexpected::Unsigned(u),
                Ok(Some(Num::I(i))) => Unexpected::Signed(i),
                _ => Unexpected::Float(f),
            },
            Ok(Item::Str(t)) => Unexpected::Str(self.tape.text(t)),
            Ok(Item::Merge) => Unexpected::Str("<<"),
            Ok(Item::Seq { .. }) => Unexpected::Seq,
            Ok(Item::Map { .. }) => Unexpected::Map,
        }
    }

    fn invalid_type<V: Visitor<'a>>(&self, visitor: &V) -> Error {
        de::Error::invalid_type(self.unexpected(), visitor)
    }

    fn visit_str<V: Visitor<'a>>(&self, t: Text<'a>, visitor: V) -> Result<V::Value, Error> {
        match t {
            Text::Src(s) => visitor.visit_borrowed_str(s),
            Text::Arena { .. } => visitor.visit_str(self.tape.text(t)),
        }
    }

    fn visit_num<V: Visitor<'a>>(n: Num, visitor: V) -> Result<V::Value, Error> {
        match n {
            Num::U(u) => visitor.visit_u64(u),
            Num::I(i) => visitor.visit_i64(i),
            Num::F(f) => visitor.visit_f64(f),
        }
    }

    fn visit_seq<V: Visitor<'a>>(&self, len: u32, visitor: V) -> Result<V::Value, Error> {
        let mut seq = Seq {
            tape: self.tape,
            next: self.idx + 1,
            end: self.tape.next(self.idx),
            remaining: len as usize,
        };
        let v = visitor.visit_seq(&mut seq)?;
        if seq.remaining == 0 {
            Ok(v)
        } else {
            Err(de::Error::invalid_length(
                len as usize,
                &"fewer elements in array",
            ))
        }
    }

    fn map_access(&self) -> Result<Map<'a, 's>, Error> {
        let entries = if self.tape.map_is_plain(self.idx) {
            Entries::Plain {
                next: self.idx + 1,
                end: self.tape.next(self.idx),
            }
        } else if let Some(small) = self.tape.small_entries(self.idx) {
            Entries::Small { small, pos: 0 }
        } else {
            Entries::Sorted(self.tape.entries(self.idx)?.into_iter())
        };
        let remaining = match &entries {
            Entries::Plain { .. } => match self.item()? {
                Item::Map { len, .. } => len as usize,
                _ => 0,
            },
            Entries::Sorted(it) => it.len(),
            Entries::Small { small, .. } => small.len,
        };
        Ok(Map {
            tape: self.tape,
            entries,
            value: None,
            remaining,
        })
    }

    fn visit_map<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, Error> {
        let mut map = self.map_access()?;
        let len = map.remaining;
        let v = visitor.visit_map(&mut map)?;
        if map.remaining == 0 {
            Ok(v)
        } else {
            Err(de::Error::invalid_length(len, &"fewer elements in map"))
        }
    }

    fn any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let item = self.item()?;
        match item {
            Item::Null => visitor.visit_unit(),
            Item::Bool(b) => visitor.visit_bool(b),
            Item::Str(t) => self.visit_str(t, visitor),
            Item::Merge => visitor.visit_borrowed_str("<<"),
            Item::Seq { len, .. } => self.visit_seq(len, visitor),
            Item::Map { .. } => self.visit_map(visitor),
            Item::Int(_) | Item::UInt(_) | Item::Float(_) | Item::JsonFloat(_) => {
                match self.num(item)? {
                    Some(n) => Self::visit_num(n, visitor),
                    None => visitor.visit_unit(),
                }
            }
        }
    }

    fn number<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.num(self.item()?)? {
            Some(n) => Self::visit_num(n, visitor),
            None => Err(self.invalid_type(&visitor)),
        }
    }

    fn string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.item()? {
            Item::Str(t) => self.visit_str(t, visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.item()? {
            Item::Seq { len, .. } => self.visit_seq(len, visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
                let this = self;
                self.number(visitor).map_err(|e| this.locate(e))
            }
        )*
    };
}

impl<'a, 's> Deserializer<'a> for NodeDeserializer<'a, 's> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        self.any(visitor).map_err(|e| this.locate(e))
    }

    numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        match self.item()? {
            Item::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| this.locate(e))
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        self.string(visitor).map_err(|e| this.locate(e))
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        self.string(visitor).map_err(|e| this.locate(e))
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        self.string(visitor).map_err(|e| this.locate(e))
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        match self.item()? {
            Item::Str(t) => self.visit_str(t, visitor),
            Item::Seq { len, .. } => self.visit_seq(len, visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| this.locate(e))
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        match self.item()? {
            Item::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| this.locate(e))
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        match self.item()? {
            Item::Null => visitor.visit_unit(),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| this.locate(e))
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let this = self;
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| this.locate(e))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        self.seq(visitor).map_err(|e| this.locate(e))
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let this = self;
        match self.item()? {
            Item::Map { .. } => self.visit_map(visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| this.locate(e))
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let this = self;
        match self.item()? {
            Item::Map { .. } => self.visit_map(visitor),
            Item::Seq { len, .. } => self.visit_seq(len, visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| this.locate(e))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let this = self;
        let r = match self.item()? {
            Item::Str(t) => visitor.visit_enum(Enum {
                tape: self.tape,
                variant: key_of_text(self.tape, t),
                value: None,
            }),
            Item::Map { .. } => {
                let mut entries = self.tape.entries(self.idx)?;
                if entries.len() != 1 {
                    return Err(de::Error::invalid_value(
                        Unexpected::Map,
                        &"map with a single key",
                    ))
                    .map_err(|e: Error| this.locate(e));
                }
                match entries.pop() {
                    Some((k, ki, vi)) => visitor.visit_enum(Enum {
                        tape: self.tape,
                        variant: key_at(self.tape, ki, k),
                        value: Some(vi),
                    }),
                    None => Err(Error::msg("internal error: empty enum map")),
                }
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &"string or map")),
        };
        r.map_err(|e| this.locate(e))
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        // Conversion would still fail on what is ignored here.
        self.tape.validate(self.idx)?;
        visitor.visit_unit()
    }
}

/// A map key's text, keeping borrowed-from-the-text strings borrowed.
enum Key<'a, 's> {
    Src(&'a str),
    Tape(&'s str),
    Owned(String),
}

impl<'a, 's> Key<'a, 's> {
    fn as_str(&self) -> &str {
        match self {
            Key::Src(s) => s,
            Key::Tape(s) => s,
            Key::Owned(s) => s,
        }
    }
}

fn key_of_text<'a, 's>(tape: &'s Tape<'a>, t: Text<'a>) -> Key<'a, 's> {
    match t {
        Text::Src(s) => Key::Src(s),
        Text::Arena { .. } => Key::Tape(tape.text(t)),
    }
}

/// The key at `ki`, already converted to `k`.
fn key_at<'a, 's>(tape: &'s Tape<'a>, ki: usize, k: Cow<'s, str>) -> Key<'a, 's> {
    match tape.evs.get(ki).map(|e| e.item) {
        Some(Item::Str(t)) => key_of_text(tape, t),
        _ => match k {
            Cow::Borrowed(s) => Key::Tape(s),
            Cow::Owned(s) => Key::Owned(s),
        },
    }
}

struct Seq<'a, 's> {
    tape: &'s Tape<'a>,
    next: usize,
    end: usize,
    remaining: usize,
}

impl<'a, 's> SeqAccess<'a> for Seq<'a, 's> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.next >= self.end {
            return Ok(None);
        }
        let idx = self.next;
        self.next = self.tape.next(idx);
        self.remaining = self.remaining.saturating_sub(1);
        seed.deserialize(NodeDeserializer::new(self.tape, idx))
            .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

// `Small` is large, on purpose: it lives on the stack for the length of one mapping.
#[allow(clippy::large_enum_variant)]
enum Entries<'s> {
    /// A small mapping's entries, sorted on the stack.
    Small {
        small: super::node::SmallEntries,
        pos: usize,
    },
    /// Keys are strictly sorted strings and there are no merge keys: walk the tape.
    Plain { next: usize, end: usize },
    /// (converted key, key index, value index), sorted and without duplicates.
    Sorted(std::vec::IntoIter<(Cow<'s, str>, usize, usize)>),
}

struct Map<'a, 's> {
    tape: &'s Tape<'a>,
    entries: Entries<'s>,
    value: Option<usize>,
    remaining: usize,
}

impl<'a, 's> MapAccess<'a> for Map<'a, 's> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let (key, ki) = match &mut self.entries {
            Entries::Small { small, pos } => {
                let Some(&(ki, vi)) = small.buf.get(*pos).filter(|_| *pos < small.len) else {
                    return Ok(None);
                };
                let (ki, vi) = (ki as usize, vi as usize);
                *pos += 1;
                self.value = Some(vi);
                let key = match self.tape.ev(ki)?.item {
                    Item::Str(t) => key_of_text(self.tape, t),
                    _ => Key::Owned(self.tape.key_string(ki)?.into_owned()),
                };
                (key, ki)
            }
            Entries::Plain { next, end } => {
                if *next >= *end {
                    return Ok(None);
                }
                let ki = *next;
                let vi = self.tape.next(ki);
                *next = self.tape.next(vi);
                self.value = Some(vi);
                let key = match self.tape.ev(ki)?.item {
                    Item::Str(t) => key_of_text(self.tape, t),
                    _ => Key::Owned(self.tape.key_string(ki)?.into_owned()),
                };
                (key, ki)
            }
            Entries::Sorted(it) => match it.next() {
                None => return Ok(None),
                Some((k, ki, vi)) => {
                    self.value = Some(vi);
                    (key_at(self.tape, ki, k), ki)
                }
            },
        };
        self.remaining = self.remaining.saturating_sub(1);
        let tape = self.tape;
        seed.deserialize(KeyDeserializer { key })
            .map(Some)
            .map_err(|e| NodeDeserializer::new(tape, ki).locate(e))
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(vi) => seed.deserialize(NodeDeserializer::new(self.tape, vi)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

/// A map key, as serde_json's `MapKeyDeserializer`: a string that numeric and boolean targets
/// parse.
struct KeyDeserializer<'a, 's> {
    key: Key<'a, 's>,
}

impl<'a, 's> KeyDeserializer<'a, 's> {
    /// serde_json parses a key for a numeric target with its own number parser, which must
    /// take the whole key (no sign but '-', no leading zeros, no surrounding whitespace).
    fn number(&self) -> Result<Num, Error> {
        let key = self.key.as_str();
        let starts_ok = matches!(key.as_bytes().first(), Some(b'0'..=b'9' | b'-'));
        let ends_ok = !key.ends_with([' ', '\t', '\n', '\r']);
        if !starts_ok || !ends_ok {
            return Err(de::Error::custom("expected numeric key"));
        }
        let n: serde_json::Number =
            serde_json::from_str(key).map_err(|_| de::Error::custom("expected numeric key"))?;
        Ok(if let Some(u) = n.as_u64() {
            Num::U(u)
        } else if let Some(i) = n.as_i64() {
            Num::I(i)
        } else {
            Num::F(n.as_f64().unwrap_or(0.0))
        })
    }
}

macro_rules! numeric_keys {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
                NodeDeserializer::visit_num(self.number()?, visitor)
            }
        )*
    };
}

impl<'a, 's> Deserializer<'a> for KeyDeserializer<'a, 's> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.key {
            Key::Src(s) => visitor.visit_borrowed_str(s),
            Key::Tape(s) => visitor.visit_str(s),
            Key::Owned(s) => visitor.visit_string(s),
        }
    }

    numeric_keys! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    }

    fn deserialize_i128<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.key.as_str().parse::<i128>() {
            Ok(n) if !self.key.as_str().starts_with('+') => visitor.visit_i128(n),
            _ => Err(de::Error::custom("expected numeric key")),
        }
    }

    fn deserialize_u128<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.key.as_str().parse::<u128>() {
            Ok(n) if !self.key.as_str().starts_with('+') => visitor.visit_u128(n),
            _ => Err(de::Error::custom("expected numeric key")),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.key.as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            other => Err(de::Error::invalid_type(Unexpected::Str(other), &visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.key {
            Key::Src(s) => {
                BorrowedStrDeserializer::<Error>::new(s).deserialize_enum(name, variants, visitor)
            }
            Key::Tape(s) => {
                StrDeserializer::<Error>::new(s).deserialize_enum(name, variants, visitor)
            }
            Key::Owned(s) => {
                StringDeserializer::<Error>::new(s).deserialize_enum(name, variants, visitor)
            }
        }
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct
        map struct identifier ignored_any
    }
}

/// An enum as a string (unit variant) or a single-key map.
struct Enum<'a, 's> {
    tape: &'s Tape<'a>,
    variant: Key<'a, 's>,
    value: Option<usize>,
}

impl<'a, 's> EnumAccess<'a> for Enum<'a, 's> {
    type Error = Error;
    type Variant = Variant<'a, 's>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let variant = Variant {
            tape: self.tape,
            value: self.value,
        };
        let v = match self.variant {
            Key::Src(s) => seed.deserialize(BorrowedStrDeserializer::<Error>::new(s)),
            Key::Tape(s) => seed.deserialize(s.into_deserializer()),
            Key::Owned(s) => seed.deserialize(s.into_deserializer()),
        }?;
        Ok((v, variant))
    }
}

struct Variant<'a, 's> {
    tape: &'s Tape<'a>,
    value: Option<usize>,
}

impl<'a, 's> VariantAccess<'a> for Variant<'a, 's> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            Some(v) => serde::Deserialize::deserialize(NodeDeserializer::new(self.tape, v)),
            None => Ok(()),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, Error> {
        match self.value {
            Some(v) => seed.deserialize(NodeDeserializer::new(self.tape, v)),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Some(v) => {
                let d = NodeDeserializer::new(self.tape, v);
                match d.item()? {
                    Item::Seq { len: 0, .. } => visitor.visit_unit(),
                    Item::Seq { len, .. } => d.visit_seq(len, visitor),
                    _ => Err(de::Error::invalid_type(d.unexpected(), &"tuple variant")),
                }
                .map_err(|e| d.locate(e))
            }
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Some(v) => {
                let d = NodeDeserializer::new(self.tape, v);
                match d.item()? {
                    Item::Map { .. } => d.visit_map(visitor),
                    _ => Err(de::Error::invalid_type(d.unexpected(), &"struct variant")),
                }
                .map_err(|e| d.locate(e))
            }
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::{json, Value};

    use crate::yaml::{documents, Node};

    fn node(text: &str) -> Node<'_> {
        documents(text)
            .next()
            .expect("a document")
            .expect("split")
            .read(|_| {})
            .expect("read")
            .expect("not null")
    }

    /// Both paths, which must agree whenever ours succeeds.
    fn both<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        n: &Node<'_>,
    ) -> Result<T, String> {
        let ours = n.deserialize::<T>().map_err(|e| e.to_string());
        let theirs = n
            .to_value()
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value::<T>(v).map_err(|e| e.to_string()));
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("ours {ours:?} but from_value {theirs:?}"),
        }
        ours
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Port {
        number: u32,
        name: Option<String>,
        target_port: Option<u16>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Mode {
        Plain,
        Weighted(u32),
        Split { a: u8, b: u8 },
    }

    #[test]
    fn values_and_typed_structs_agree_with_from_value() {
        let n = node("a: [1, -2, 1e3, 8000.0, 1.5, yes, ~, '0777', 0777]\nb: {z: 1, m: 2, m: 3}\n");
        assert_eq!(
            both::<Value>(&n).unwrap(),
            json!({"a": [1, -2, 1000, 8000, 1.5, true, null, "0777", 511], "b": {"m": 3, "z": 1}})
        );
        let p = both::<Port>(&node("number: 8000.0\nname: http\ntargetPort: 0x1F90\n")).unwrap();
        assert_eq!(
            p,
            Port {
                number: 8000,
                name: Some("http".into()),
                target_port: Some(8080)
            }
        );
        // serde errors: unknown field, invalid type, out of range.
        assert!(both::<Port>(&node("number: 1\nfoo: 2\n")).is_err());
        assert!(both::<Port>(&node("number: '80'\n")).is_err());
        assert!(both::<Port>(&node("number: -1\n")).is_err());
        assert!(both::<Port>(&node("number: 1.5\n")).is_err());
        // Merge keys and duplicates give the same struct.
        let p = both::<Port>(&node(
            "base: &b {number: 1}\nport:\n  <<: *b\n  number: 2\n  number: 3\n",
        ));
        assert!(p.is_err()); // `base` and `port` are unknown fields
        let p = both::<BTreeMap<String, Port>>(&node(
            "first: &b {number: 1}\nsecond:\n  <<: *b\n  name: web\n",
        ))
        .unwrap();
        assert_eq!(
            p["second"],
            Port {
                number: 1,
                name: Some("web".into()),
                target_port: None
            }
        );
    }

    #[test]
    fn enums_options_and_keys() {
        assert_eq!(both::<Mode>(&node("Plain")).unwrap(), Mode::Plain);
        assert_eq!(
            both::<Mode>(&node("Weighted: 3")).unwrap(),
            Mode::Weighted(3)
        );
        assert_eq!(
            both::<Mode>(&node("Split: {a: 1, b: 2}")).unwrap(),
            Mode::Split { a: 1, b: 2 }
        );
        assert!(both::<Mode>(&node("{Plain: 1, Weighted: 2}")).is_err());
        assert!(both::<Mode>(&node("[Plain]")).is_err());
        assert_eq!(both::<Option<u8>>(&node("[~]")).ok(), None::<Option<u8>>);
        assert_eq!(
            both::<Vec<Option<u8>>>(&node("[~, 1]")).unwrap(),
            vec![None, Some(1)]
        );
        // Keys are parsed for numeric and boolean key types, as serde_json does.
        let m = both::<BTreeMap<u16, bool>>(&node("80: on\n0x1F: off\n")).unwrap();
        assert_eq!(m, BTreeMap::from([(80, true), (31, false)]));
        assert!(both::<BTreeMap<u16, bool>>(&node("a: on\n")).is_err());
        let m = both::<BTreeMap<bool, u8>>(&node("yes: 1\n'false': 0\n")).unwrap();
        assert_eq!(m, BTreeMap::from([(true, 1), (false, 0)]));
        // Tuples must match the length.
        assert!(both::<(u8, u8)>(&node("[1, 2, 3]")).is_err());
        assert_eq!(both::<(u8, u8)>(&node("[1, 2]")).unwrap(), (1, 2));
    }

    #[test]
    fn ignored_values_are_still_checked() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Loose {
            a: u8,
        }
        assert!(both::<Loose>(&node("a: 1\nb: .inf\n")).is_err());
        assert!(both::<Loose>(&node("a: 1\nb: {~: 1}\n")).is_err());
        assert_eq!(
            both::<Loose>(&node("a: 1\nb: {c: 2}\n")).unwrap(),
            Loose { a: 1 }
        );
    }

    #[test]
    fn strings_borrow_from_the_text() {
        #[derive(Deserialize)]
        struct B<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
            plain: &'a str,
        }
        let n = node("name: plain\nplain: also\n");
        let b: B<'_> = n.deserialize().unwrap();
        assert!(matches!(b.name, Cow::Borrowed("plain")));
        assert_eq!(b.plain, "also");
        // A folded string is not in the text as such: `Cow` gets a copy, `&str` cannot.
        let n = node("name: \"a\\tb\"\nplain: x\n");
        let b: B<'_> = n.deserialize().unwrap();
        assert!(matches!(b.name, Cow::Owned(_)));
        assert!(node("name: x\nplain: 'it''s'\n")
            .deserialize::<B<'_>>()
            .is_err());
    }

    #[test]
    fn errors_carry_positions() {
        let e = node("a:\n  number: x\n")
            .deserialize::<BTreeMap<String, Port>>()
            .err()
            .unwrap();
        assert_eq!((e.line, e.column), (Some(2), Some(11)));
        let e = node("number: 1\nbad: 2\n")
            .deserialize::<Port>()
            .err()
            .unwrap();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("unknown field"));
    }
}
