//! The composer: events to tapes, with go-yaml's decoder rules and limits.
//!
//! It does what go-yaml's `parser`/`decoder` pair does before values exist:
//!
//! * **Anchors and aliases** within one document: an alias to an unknown anchor, or to an
//!   anchor whose node is still open (`&x [*x]`), is an error; a redefined anchor is seen by the
//!   aliases after it. An alias is expanded by copying the anchored value, so a [`Node`] never
//!   refers back to anything.
//! * **Excessive aliasing**: go-yaml counts every node it decodes and every node decoded inside
//!   an alias expansion, and fails with "document contains excessive aliasing" once more than
//!   100 of them came from aliases, more than 1000 in all, and the share from aliases is above
//!   99% (falling to 10% between 400,000 and 4,000,000 decodes). We count the same way, per
//!   document, which bounds expansion ("billion laughs") in time and memory.
//! * **Scalars** are resolved (`resolve.rs`), tag errors reported; a plain `<<` key (or
//!   `!!merge <<`) becomes a merge key, whose value must be a mapping or a sequence of mappings;
//!   a sequence or mapping as a key is "invalid map key".
//! * **Depth**: at most [`MAX_DEPTH`] nested collections, counting the depth an alias brings.
//! * **Streaming of `items`**: in a top-level mapping, the elements of an `items` sequence (a
//!   `kind: List`) are built one at a time in their own tape and handed to the caller's
//!   callback as soon as each is complete; the top-level tape gets `items: []` in their place.
//!   If, after elements were handed over, a later entry of the top-level mapping sets `items`
//!   again (a second `items` key, or a merge key bringing one), later-wins would make what the
//!   caller received wrong, so that document is refused with an error instead.
//!
//! Anchored values are referred to where they are (in the top-level tape, or in the current
//! item's tape); an item's tape that defines anchors is copied to a store when it is handed
//! over, so later aliases still find them. Each value is thus copied at most once for anchors,
//! and alias expansion is bounded by the alias limit: reading stays linear in the input.

use std::borrow::Cow;
use std::collections::HashMap;

use super::error::{Error, Pos};
use super::node::{Ev, Item, Node, Tape, Text};
use super::resolve::{self, is_merge_key, resolve, Resolved};
use super::scanner::MAX_DEPTH;

/// Which tape an anchored value lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Top,
    Item,
    Store,
}

#[derive(Debug, Clone, Copy)]
enum AnchorState {
    /// The anchored collection is still being read: an alias to it is recursive.
    Open,
    Done {
        loc: Loc,
        start: usize,
        /// Decodes go-yaml makes when it expands an alias to this value.
        cost: u64,
        /// Nesting the value brings (0 for a scalar).
        height: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct AnchorDef {
    id: u64,
    state: AnchorState,
}

#[derive(Debug, Clone, Copy)]
struct OpenAnchor<'a> {
    name: &'a str,
    id: u64,
    decodes_before: u64,
}

#[derive(Debug)]
struct Frame<'a> {
    /// Index of the collection's item in its tape.
    start: usize,
    loc: Loc,
    is_map: bool,
    /// Elements, or key/value pairs.
    len: u32,
    /// For a mapping: the next value is a key.
    expect_key: bool,
    /// For a mapping: the value being read belongs to a merge key.
    after_merge: bool,
    /// For the top-level mapping: the value being read belongs to the key `items`.
    after_items_key: bool,
    /// This is the streamed `items` sequence: its elements go to the callback.
    streamed: bool,
    /// Height of the deepest child so far.
    height: usize,
    /// For a mapping: where the value being read starts in the tape.
    value_start: usize,
    anchor: Option<OpenAnchor<'a>>,
}

/// Where the item being started sits in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Key,
    Value,
    Element,
}

pub(crate) struct Composer<'a, 'f> {
    top: Tape<'a>,
    /// The tape of the `items` element being read, if one is.
    item: Option<Tape<'a>>,
    /// Anchored values of handed-over items.
    store: Tape<'a>,
    stack: Vec<Frame<'a>>,
    anchors: HashMap<&'a str, AnchorDef>,
    /// Anchors defined in the current item's tape (to move to the store on hand-over).
    item_anchors: Vec<&'a str>,
    next_anchor_id: u64,
    decodes: u64,
    alias_decodes: u64,
    on_item: &'f mut dyn FnMut(Node<'a>),
    /// Elements of `items` handed over so far.
    streamed: usize,
    /// The streamed `items` sequence carries an anchor: its elements are also recorded in the
    /// store, as one sequence starting at this index.
    recording: Option<usize>,
    root_done: bool,
    /// Size of the last item's tape, to size the next one.
    last_item_len: usize,
}

fn alias_ratio_allowed(decodes: u64) -> f64 {
    const LOW: f64 = 400_000.0;
    const HIGH: f64 = 4_000_000.0;
    let d = decodes as f64;
    if d <= LOW {
        0.99
    } else if d >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((d - LOW) / (HIGH - LOW))
    }
}

fn to_u32(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::msg("document too large"))
}

impl<'a, 'f> Composer<'a, 'f> {
    /// `text_len`: the length of the document's text, to size the tape (about one item per
    /// eight bytes in Kubernetes manifests; a list's items get tapes of their own).
    pub(crate) fn new(on_item: &'f mut dyn FnMut(Node<'a>), text_len: usize) -> Composer<'a, 'f> {
        Composer {
            top: Tape {
                evs: Vec::with_capacity((text_len / 8 + 4).min(4096)),
                arena: String::new(),
            },
            item: None,
            store: Tape::default(),
            stack: Vec::with_capacity(8),
            anchors: HashMap::new(),
            item_anchors: Vec::new(),
            next_anchor_id: 0,
            decodes: 0,
            alias_decodes: 0,
            on_item,
            streamed: 0,
            recording: None,
            root_done: false,
            last_item_len: 0,
        }
    }

    /// The composed document: `None` when its value is null (kubectl skips those).
    #[inline(never)]
    pub(crate) fn finish(self) -> Result<Option<Node<'a>>, Error> {
        if !self.stack.is_empty() {
            return Err(Error::msg(
                "internal error: document ended inside a collection",
            ));
        }
        let node = Node { tape: self.top };
        match node.root().map(|e| e.item) {
            None | Some(Item::Null) => Ok(None),
            Some(_) => Ok(Some(node)),
        }
    }

    pub(crate) fn root_done(&self) -> bool {
        self.root_done
    }

    fn cur_loc(&self) -> Loc {
        if self.item.is_some() {
            Loc::Item
        } else {
            Loc::Top
        }
    }

    fn tape_mut(&mut self, loc: Loc) -> &mut Tape<'a> {
        match (loc, self.item.as_mut()) {
            (Loc::Item, Some(t)) => t,
            (Loc::Store, _) => &mut self.store,
            _ => &mut self.top,
        }
    }

    fn tape(&self, loc: Loc) -> &Tape<'a> {
        match (loc, self.item.as_ref()) {
            (Loc::Item, Some(t)) => t,
            (Loc::Store, _) => &self.store,
            _ => &self.top,
        }
    }

    fn count_decodes(&mut self, n: u64, from_alias: u64, pos: Pos) -> Result<(), Error> {
        self.decodes += n;
        self.alias_decodes += from_alias;
        if self.alias_decodes > 100
            && self.decodes > 1000
            && (self.alias_decodes as f64 / self.decodes as f64) > alias_ratio_allowed(self.decodes)
        {
            return Err(Error::at(pos, "document contains excessive aliasing"));
        }
        Ok(())
    }

    /// Before a value starts: a second root is ignored by the caller; an element of the
    /// streamed `items` starts a new tape.
    #[inline]
    fn begin(&mut self) -> Result<Role, Error> {
        let (role, streamed) = match self.stack.last() {
            None if self.root_done => return Err(Self::after_root()),
            None => (Role::Root, false),
            Some(f) if !f.is_map => (Role::Element, f.streamed),
            Some(f) if f.expect_key => (Role::Key, false),
            Some(_) => (Role::Value, false),
        };
        if streamed {
            self.new_item_tape();
        }
        if role == Role::Value {
            let len = match &self.item {
                Some(t) => t.evs.len(),
                None => self.top.evs.len(),
            };
            if let Some(f) = self.stack.last_mut() {
                f.value_start = len;
            }
        }
        Ok(role)
    }

    #[cold]
    fn after_root() -> Error {
        Error::msg("internal error: value after the document's root")
    }

    /// An element of the streamed `items` starts: it gets its own tape.
    #[inline(never)]
    fn new_item_tape(&mut self) {
        self.item = Some(Tape {
            evs: Vec::with_capacity(self.last_item_len.max(16)),
            arena: String::new(),
        });
    }

    #[inline]
    fn push(&mut self, item: Item<'a>, pos: Pos) {
        let tape = match self.item.as_mut() {
            Some(t) => t,
            None => &mut self.top,
        };
        tape.evs.push(Ev {
            item,
            line: pos.line.min(u32::MAX as usize) as u32,
            column: pos.column.min(u32::MAX as usize) as u32,
        });
    }

    fn text(&mut self, s: Cow<'a, str>) -> Result<Text<'a>, Error> {
        match s {
            Cow::Borrowed(b) => Ok(Text::Src(b)),
            Cow::Owned(o) => {
                let loc = self.cur_loc();
                self.tape_mut(loc).intern(&o)
            }
        }
    }

    #[inline(never)]
    fn open_anchor(&mut self, name: &'a str) -> OpenAnchor<'a> {
        self.next_anchor_id += 1;
        let id = self.next_anchor_id;
        self.anchors.insert(
            name,
            AnchorDef {
                id,
                state: AnchorState::Open,
            },
        );
        OpenAnchor {
            name,
            id,
            decodes_before: self.decodes,
        }
    }

    /// Records a completed anchored value (unless the name was redefined meanwhile: go-yaml
    /// registers an anchor when its node starts, so the later start wins).
    #[inline(never)]
    fn close_anchor(&mut self, a: OpenAnchor<'a>, loc: Loc, start: usize, height: usize) {
        let cost = self.decodes - a.decodes_before;
        if let Some(def) = self.anchors.get_mut(a.name) {
            if def.id == a.id {
                def.state = AnchorState::Done {
                    loc,
                    start,
                    cost,
                    height,
                };
                if loc == Loc::Item {
                    self.item_anchors.push(a.name);
                }
            }
        }
    }

    /// A scalar of a YAML document.
    #[inline]
    pub(crate) fn yaml_scalar(
        &mut self,
        value: Cow<'a, str>,
        tag: Option<&str>,
        plain_implicit: bool,
        anchor: Option<&'a str>,
        pos: Pos,
    ) -> Result<(), Error> {
        let role = self.begin()?;
        if anchor.is_some() {
            return self.anchored_scalar(role, value, tag, plain_implicit, anchor, pos);
        }
        if role == Role::Key && is_merge_key(&value, tag, plain_implicit) {
            // go-yaml does not decode a merge key, so it is not counted.
            self.push(Item::Merge, pos);
        } else {
            self.count_decodes(1, 0, pos)?;
            let item = self.resolved(value, tag, plain_implicit, pos)?;
            self.push(item, pos);
        }
        self.finish_value(0, pos)
    }

    #[inline]
    fn resolved(
        &mut self,
        value: Cow<'a, str>,
        tag: Option<&str>,
        plain_implicit: bool,
        pos: Pos,
    ) -> Result<Item<'a>, Error> {
        // Most scalars are strings that no rule can turn into anything else: quoted ones, and
        // plain ones whose first character cannot start a number, boolean or null.
        if tag.is_none() && (!plain_implicit || !resolve::may_resolve(&value)) {
            return Ok(Item::Str(self.text(value)?));
        }
        Ok(match resolve(value, tag, plain_implicit) {
            Ok(Resolved::Null) => Item::Null,
            Ok(Resolved::Bool(b)) => Item::Bool(b),
            Ok(Resolved::Int(i)) => Item::Int(i),
            Ok(Resolved::UInt(u)) => Item::UInt(u),
            Ok(Resolved::Float(f)) => Item::Float(f),
            Ok(Resolved::Str(s)) => Item::Str(self.text(s)?),
            Err(problem) => return Err(Error::at(pos, problem)),
        })
    }

    /// A scalar with an anchor (rare).
    #[inline(never)]
    fn anchored_scalar(
        &mut self,
        role: Role,
        value: Cow<'a, str>,
        tag: Option<&str>,
        plain_implicit: bool,
        anchor: Option<&'a str>,
        pos: Pos,
    ) -> Result<(), Error> {
        let open = anchor.map(|a| self.open_anchor(a));
        if role == Role::Key && is_merge_key(&value, tag, plain_implicit) {
            self.push(Item::Merge, pos);
        } else {
            self.count_decodes(1, 0, pos)?;
            let item = self.resolved(value, tag, plain_implicit, pos)?;
            self.push(item, pos);
        }
        if let Some(a) = open {
            let loc = self.cur_loc();
            let start = self.tape(loc).evs.len() - 1;
            self.close_anchor(a, loc, start, 0);
        }
        self.finish_value(0, pos)
    }

    /// A scalar of a JSON document (already typed).
    pub(crate) fn json_scalar(&mut self, item: JsonScalar<'a>, pos: Pos) -> Result<(), Error> {
        self.begin()?;
        self.count_decodes(1, 0, pos)?;
        let item = match item {
            JsonScalar::Null => Item::Null,
            JsonScalar::Bool(b) => Item::Bool(b),
            JsonScalar::Int(i) => Item::Int(i),
            JsonScalar::UInt(u) => Item::UInt(u),
            JsonScalar::Float(f) => Item::JsonFloat(f),
            JsonScalar::Str(s) => Item::Str(self.text(s)?),
        };
        self.push(item, pos);
        self.finish_value(0, pos)
    }

    /// The start of a sequence (`map == false`) or mapping.
    pub(crate) fn start(
        &mut self,
        map: bool,
        anchor: Option<&'a str>,
        pos: Pos,
    ) -> Result<(), Error> {
        let role = self.begin()?;
        if role == Role::Key {
            return Err(Error::at(
                pos,
                "invalid map key: a sequence or mapping cannot be a key",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(Error::at(pos, format!("exceeded max depth of {MAX_DEPTH}")));
        }
        let parent_after_merge = self.stack.last().is_some_and(|f| f.after_merge);
        // go-yaml decodes a merge key's sequence element by element, not the sequence itself.
        if map || !parent_after_merge {
            self.count_decodes(1, 0, pos)?;
        }
        let streamed = !map && role == Role::Value && self.is_items_value();
        let open = anchor.map(|a| self.open_anchor(a));
        if streamed && open.is_some() {
            // An anchored `items`: its elements are also kept, for aliases to the list.
            self.recording = Some(self.store.evs.len());
            self.store.evs.push(Ev {
                item: Item::Seq { span: 1, len: 0 },
                line: pos.line as u32,
                column: pos.column as u32,
            });
        }
        let loc = self.cur_loc();
        let start = self.tape(loc).evs.len();
        let item = if map {
            Item::Map { span: 1, len: 0 }
        } else {
            Item::Seq { span: 1, len: 0 }
        };
        self.push(item, pos);
        self.stack.push(Frame {
            start,
            loc,
            is_map: map,
            len: 0,
            expect_key: map,
            after_merge: false,
            after_items_key: false,
            streamed,
            height: 0,
            value_start: 0,
            anchor: open,
        });
        Ok(())
    }

    /// Whether the value being started is that of the key `items` of the top-level mapping.
    fn is_items_value(&self) -> bool {
        self.stack.len() == 1 && self.stack.last().is_some_and(|f| f.after_items_key)
    }

    /// The end of the innermost sequence or mapping.
    pub(crate) fn end(&mut self, pos: Pos) -> Result<(), Error> {
        let frame = self
            .stack
            .pop()
            .ok_or_else(|| Error::at(pos, "internal error: end without start"))?;
        let height = frame.height + 1;
        let loc = frame.loc;
        if frame.streamed {
            // The top-level tape keeps `items: []`; the elements went to the callback.
            if let Some(rec) = self.recording.take() {
                let span = to_u32(self.store.evs.len() - rec)?;
                if let Some(ev) = self.store.evs.get_mut(rec) {
                    ev.item = Item::Seq {
                        span,
                        len: frame.len,
                    };
                }
                if let Some(a) = frame.anchor {
                    self.close_anchor(a, Loc::Store, rec, height);
                }
            }
        } else {
            let tape = self.tape_mut(loc);
            let span = to_u32(tape.evs.len() - frame.start)?;
            if let Some(ev) = tape.evs.get_mut(frame.start) {
                ev.item = if frame.is_map {
                    Item::Map {
                        span,
                        len: frame.len,
                    }
                } else {
                    Item::Seq {
                        span,
                        len: frame.len,
                    }
                };
            }
            if let Some(a) = frame.anchor {
                self.close_anchor(a, loc, frame.start, height);
            }
        }
        if frame.is_map && frame.after_merge {
            return Err(Error::at(pos, "internal error: merge key without value"));
        }
        self.finish_value(height, pos)
    }

    /// An alias: the anchored value, copied.
    #[inline(never)]
    pub(crate) fn alias(&mut self, name: &'a str, pos: Pos) -> Result<(), Error> {
        let role = self.begin()?;
        let def = match self.anchors.get(name) {
            None => {
                return Err(Error::at(
                    pos,
                    format!("unknown anchor '{name}' referenced"),
                ))
            }
            Some(def) => def.state,
        };
        let (loc, start, cost, height) = match def {
            AnchorState::Open => {
                return Err(Error::at(
                    pos,
                    format!("anchor '{name}' value contains itself"),
                ))
            }
            AnchorState::Done {
                loc,
                start,
                cost,
                height,
            } => (loc, start, cost, height),
        };
        if self.stack.len() + height > MAX_DEPTH {
            return Err(Error::at(pos, format!("exceeded max depth of {MAX_DEPTH}")));
        }
        let src_item = self.tape(loc).ev(start)?.item;
        let is_collection = matches!(src_item, Item::Seq { .. } | Item::Map { .. });
        if role == Role::Key && is_collection {
            return Err(Error::at(
                pos,
                "invalid map key: a sequence or mapping cannot be a key",
            ));
        }
        // The alias node itself, then every node of the expansion (decoded inside an alias).
        self.count_decodes(1, 0, pos)?;
        self.count_decodes(cost, cost, pos)?;

        let span = self.tape(loc).next(start) - start;
        if role == Role::Value && matches!(src_item, Item::Seq { .. }) && self.is_items_value() {
            // `items: *list`: hand the elements over one by one, like a written sequence.
            self.push(Item::Seq { span: 1, len: 0 }, pos);
            let end = start + span;
            let mut e = start + 1;
            let mut n = 0u32;
            while e < end {
                let next = self.tape(loc).next(e);
                let mut t = Tape::default();
                t.copy_from(self.tape(loc), e, next)?;
                (self.on_item)(Node { tape: t });
                self.streamed += 1;
                n += 1;
                e = next;
            }
            let _ = n;
            return self.finish_value(height, pos);
        }
        let dst = self.cur_loc();
        let copy_start = self.tape(dst).evs.len();
        if dst == loc {
            let tape = self.tape_mut(dst);
            tape.evs.extend_from_within(start..start + span);
        } else {
            let (src, dst_tape) = match (loc, dst) {
                (Loc::Top, Loc::Item) => (&self.top, self.item.as_mut()),
                (Loc::Store, Loc::Item) => (&self.store, self.item.as_mut()),
                (Loc::Store, Loc::Top) => (&self.store, Some(&mut self.top)),
                _ => {
                    return Err(Error::at(
                        pos,
                        "internal error: alias to a handed-over value",
                    ))
                }
            };
            match dst_tape {
                Some(d) => d.copy_from(src, start, start + span)?,
                None => return Err(Error::at(pos, "internal error: no tape for alias")),
            }
        }
        // The copy's root gets the alias's position; an anchored merge key is, through an
        // alias, just the string "<<" (go-yaml only merges on the scalar node itself).
        if let Some(ev) = self.tape_mut(dst).evs.get_mut(copy_start) {
            ev.line = pos.line as u32;
            ev.column = pos.column as u32;
            if ev.item == Item::Merge {
                ev.item = Item::Str(Text::Src("<<"));
            }
        }
        self.finish_value(height, pos)
    }

    /// After a value is complete: update its parent (or finish the document).
    #[inline]
    fn finish_value(&mut self, height: usize, pos: Pos) -> Result<(), Error> {
        let depth = self.stack.len();
        let Some(parent) = self.stack.last_mut() else {
            self.root_done = true;
            return Ok(());
        };
        if height > parent.height {
            parent.height = height;
        }
        if !parent.is_map {
            parent.len += 1;
            if parent.streamed {
                return self.hand_over();
            }
            return Ok(());
        }
        if parent.expect_key {
            parent.expect_key = false;
            // A key: only merge keys, and `items` of the top-level mapping, need care.
            let tape = match self.item.as_ref() {
                Some(t) => t,
                None => &self.top,
            };
            match tape.evs.last().map(|e| e.item) {
                Some(Item::Merge) => parent.after_merge = true,
                Some(Item::Str(t)) if depth == 1 => {
                    let is_items = tape.text(t) == "items";
                    if is_items && self.streamed > 0 {
                        return Err(Error::at(
                            pos,
                            "the list's `items` is given again after its elements were read \
                             (the later one would win): refusing the document",
                        ));
                    }
                    parent.after_items_key = is_items;
                }
                _ => {}
            }
            return Ok(());
        }
        parent.expect_key = true;
        parent.len += 1;
        parent.after_items_key = false;
        if parent.after_merge {
            parent.after_merge = false;
            let v = parent.value_start;
            return self.merged(v, depth, pos);
        }
        Ok(())
    }

    /// After a merge key's value: check it, and that it does not bring `items` again.
    #[inline(never)]
    fn merged(&mut self, v: usize, depth: usize, pos: Pos) -> Result<(), Error> {
        let loc = self.cur_loc();
        self.check_merge_value(loc, v)?;
        if depth == 1 && self.streamed > 0 && self.merge_sets_items(loc, v) {
            return Err(Error::at(
                pos,
                "a merge key brings `items` after the list's elements were read \
                 (the later one would win): refusing the document",
            ));
        }
        Ok(())
    }

    /// A merge key's value must be a mapping, or a sequence of mappings.
    #[inline(never)]
    fn check_merge_value(&self, loc: Loc, v: usize) -> Result<(), Error> {
        let tape = self.tape(loc);
        let ev = tape.ev(v)?;
        let ok = match ev.item {
            Item::Map { .. } => true,
            Item::Seq { .. } => {
                let end = tape.next(v);
                let mut e = v + 1;
                let mut all = true;
                while e < end {
                    all &= matches!(tape.evs.get(e).map(|x| x.item), Some(Item::Map { .. }));
                    e = tape.next(e);
                }
                all
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::at(
                ev.pos(),
                "map merge requires map or sequence of maps as the value",
            ))
        }
    }

    #[inline(never)]
    fn merge_sets_items(&self, loc: Loc, v: usize) -> bool {
        let tape = self.tape(loc);
        let mut found = false;
        let mut check = |k: usize, _v: usize| {
            if tape.key_string(k).is_ok_and(|s| s == "items") {
                found = true;
            }
            Ok(())
        };
        let wrapper_ok = match tape.evs.get(v).map(|e| e.item) {
            Some(Item::Map { .. }) => tape.for_each_entry(v, &mut check).is_ok(),
            Some(Item::Seq { .. }) => {
                let end = tape.next(v);
                let mut e = v + 1;
                let mut ok = true;
                while e < end {
                    ok &= tape.for_each_entry(e, &mut check).is_ok();
                    e = tape.next(e);
                }
                ok
            }
            _ => true,
        };
        found || !wrapper_ok
    }

    /// Hands the completed `items` element to the callback.
    #[inline(never)]
    fn hand_over(&mut self) -> Result<(), Error> {
        let Some(tape) = self.item.take() else {
            return Err(Error::msg("internal error: no item to hand over"));
        };
        if self.recording.is_some() || !self.item_anchors.is_empty() {
            // Keep a copy for later aliases (to anchors inside, or to the whole list).
            let base = self.store.evs.len();
            self.store.copy_from(&tape, 0, tape.evs.len())?;
            for name in self.item_anchors.drain(..) {
                if let Some(def) = self.anchors.get_mut(name) {
                    if let AnchorState::Done { loc, start, .. } = &mut def.state {
                        if *loc == Loc::Item {
                            *loc = Loc::Store;
                            *start += base;
                        }
                    }
                }
            }
        }
        self.streamed += 1;
        self.last_item_len = tape.evs.len();
        (self.on_item)(Node { tape });
        Ok(())
    }
}

/// A typed scalar of a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonScalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::yaml::testutil::{one, read};
    use crate::yaml::{documents, Node};

    #[test]
    fn aliases_copy_the_anchored_value() {
        assert_eq!(
            one("a: &x {p: 80}\nb: *x\n").unwrap(),
            json!({"a": {"p": 80}, "b": {"p": 80}})
        );
        assert_eq!(
            one("a: &x 1\nb: &x 2\nc: *x\n").unwrap(),
            json!({"a": 1, "b": 2, "c": 2})
        );
        assert_eq!(
            one("a: &k key\n*k : v\n").unwrap(),
            json!({"a": "key", "key": "v"})
        );
        assert_eq!(
            one("a: &x\nb: *x\n").unwrap(),
            json!({"a": null, "b": null})
        );
        // The inner definition starts later, so it is the one that counts.
        assert_eq!(
            one("a: &x [&x 1, 2]\nb: *x\n").unwrap(),
            json!({"a": [1, 2], "b": 1})
        );
        assert!(one("a: *nope\n").is_err());
        assert!(one("b: *x\na: &x 1\n").is_err());
        assert!(one("a: &x [*x]\n").is_err());
        assert!(one("a: &x [1]\n*x : v\n").is_err());
        // Anchors do not cross documents.
        assert!(read("a: &x 1\n---\nb: *x\n").is_err());
    }

    fn laughs(levels: usize, width: usize) -> String {
        let mut s = String::from("a0: &a0 lol\n");
        for l in 1..=levels {
            let refs: Vec<String> = (0..width).map(|_| format!("*a{}", l - 1)).collect();
            s.push_str(&format!("a{l}: &a{l} [{}]\n", refs.join(", ")));
        }
        s
    }

    #[test]
    fn billion_laughs_stay_bounded() {
        assert!(one(&laughs(3, 10)).is_ok());
        let start = std::time::Instant::now();
        for levels in [4, 5, 6, 9, 30] {
            let e = one(&laughs(levels, 10)).err().map(|e| e.message);
            assert_eq!(
                e.as_deref(),
                Some("document contains excessive aliasing"),
                "{levels}"
            );
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Many aliases to a scalar are fine (ratio about one half).
        let many = format!("a: &a x\nb: [{}]\n", vec!["*a"; 2000].join(", "));
        assert!(one(&many).is_ok());
    }

    #[test]
    fn merge_keys_in_go_yaml_order() {
        let base = "base: &b {a: 1, b: 2}\n";
        assert_eq!(
            one(&format!("{base}m:\n  <<: *b\n  b: 3\n")).unwrap()["m"],
            json!({"a": 1, "b": 3})
        );
        // go-yaml merges in document order: a later merge overwrites.
        assert_eq!(
            one(&format!("{base}m:\n  b: 3\n  <<: *b\n")).unwrap()["m"],
            json!({"a": 1, "b": 2})
        );
        assert_eq!(
            one("x: &x {a: 1}\nz: &y {a: 2, b: 2}\nm:\n  <<: [*x, *y]\n").unwrap()["m"],
            json!({"a": 1, "b": 2})
        );
        assert_eq!(
            one("m: {<<: {a: 1}, c: 2}\n").unwrap()["m"],
            json!({"a": 1, "c": 2})
        );
        assert_eq!(
            one("m: {!!merge <<: {a: 1}}\n").unwrap()["m"],
            json!({"a": 1})
        );
        assert_eq!(
            one("m:\n  \"<<\": {a: 1}\n").unwrap()["m"],
            json!({"<<": {"a": 1}})
        );
        assert_eq!(one("v: <<\n").unwrap(), json!({"v": "<<"}));
        for bad in [
            "m:\n  <<: 1\n",
            "m:\n  <<: [1]\n",
            "m:\n  <<:\n",
            "a: &s [1]\nm:\n  <<: *s\n",
        ] {
            assert!(one(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        assert_eq!(one("a: 1\na: 2\n").unwrap(), json!({"a": 2}));
        assert_eq!(one("{a: 1, a: 2}").unwrap(), json!({"a": 2}));
        assert_eq!(one("on: a\ntrue: b\n").unwrap(), json!({"true": "b"}));
        assert_eq!(one("1: int\n\"1\": str\n").unwrap(), json!({"1": "str"}));
        // An overwritten value is not converted, so it cannot fail.
        assert_eq!(one("a: .inf\na: 1\n").unwrap(), json!({"a": 1}));
        assert!(one("a: .inf\n").is_err());
        assert!(one("~: 1\n").is_err());
        assert!(one("? [a]\n: x\n").is_err());
    }

    #[test]
    fn tags_apply() {
        assert_eq!(
            one("a: !!str 0777\nb: !!int \"8000\"\nc: !!float 8000\nd: !!bool yes\ne: !!null ''\nf: !!binary aGVsbG8=\ng: !foo 123\nh: !\ni: !foo {a: 1}\n").unwrap(),
            json!({"a": "0777", "b": 8000, "c": 8000, "d": true, "e": null, "f": "hello", "g": "123", "h": "", "i": {"a": 1}})
        );
        assert!(one("a: !!int 1.5\n").is_err());
        assert!(one("a: !!binary \"not base64!\"\n").is_err());
    }

    #[test]
    fn depth_limit_counts_aliases() {
        let ok = format!("{}{}", "[".repeat(999), "]".repeat(999));
        assert!(one(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(1001), "]".repeat(1001));
        assert!(one(&deep).is_err());
        let nested = format!(
            "a: &a {}1{}\nb: {}*a{}\n",
            "[".repeat(600),
            "]".repeat(600),
            "[".repeat(600),
            "]".repeat(600)
        );
        assert!(one(&nested).is_err());
    }

    fn stream(
        text: &str,
    ) -> Result<(Option<Node<'_>>, Vec<serde_json::Value>), crate::yaml::Error> {
        let mut docs = documents(text);
        let doc = docs.next().expect("a document")?;
        let mut items = Vec::new();
        let node = doc.read(|n| items.push(n.to_value().expect("item")))?;
        Ok((node, items))
    }

    #[test]
    fn list_items_are_streamed() {
        for text in [
            "apiVersion: v1\nitems:\n- a: 1\n- b: 2\nkind: List\n",
            "kind: List\nitems: [{a: 1}, {b: 2}]\n",
            "{\"kind\": \"List\", \"items\": [{\"a\": 1}, {\"b\": 2}]}",
        ] {
            let (node, items) = stream(text).unwrap();
            let node = node.unwrap();
            assert_eq!(items, vec![json!({"a": 1}), json!({"b": 2})], "{text}");
            assert_eq!(node.to_value().unwrap()["items"], json!([]));
            assert_eq!(node.str_field("kind"), Some("List"));
            // Only the list's own entries are kept.
            assert!(node.tape.evs.len() < 10);
        }
        // `items` that is not a sequence is kept; nested `items` are not streamed.
        let (node, items) = stream("items: {a: 1}\n").unwrap();
        assert!(items.is_empty());
        assert_eq!(
            node.unwrap().to_value().unwrap(),
            json!({"items": {"a": 1}})
        );
        let (_, items) = stream("spec:\n  items: [1]\n").unwrap();
        assert!(items.is_empty());
        // Aliases between items, to the list, and `items: *list` all work.
        assert_eq!(
            read("items:\n- &a {x: 1}\n- *a\n").unwrap(),
            vec![json!({"items": [{"x": 1}, {"x": 1}]})]
        );
        assert_eq!(
            read("items: &l [1, 2]\ncopy: *l\n").unwrap(),
            vec![json!({"items": [1, 2], "copy": [1, 2]})]
        );
        assert_eq!(
            read("base: &l [1, 2]\nitems: *l\n").unwrap(),
            vec![json!({"base": [1, 2], "items": [1, 2]})]
        );
        // A later `items` after elements were handed over is refused; before, it wins.
        assert!(stream("items: [1]\nitems: [2]\n").is_err());
        assert!(stream("items: [1]\n<<: {items: 3}\n").is_err());
        let (node, items) = stream("items: null\nitems: [2]\n").unwrap();
        assert_eq!(items, vec![json!(2)]);
        assert_eq!(node.unwrap().to_value().unwrap(), json!({"items": []}));
        let (node, items) = stream("items: []\nitems: 3\n").unwrap();
        assert!(items.is_empty());
        assert_eq!(node.unwrap().to_value().unwrap(), json!({"items": 3}));
    }

    #[test]
    fn a_large_list_is_never_held_whole() {
        let mut text = String::from("apiVersion: v1\nitems:\n");
        for i in 0..100_000 {
            text.push_str(&format!("- {{name: svc-{i}, port: {i}}}\n"));
        }
        text.push_str("kind: List\n");
        let doc = documents(&text).next().unwrap().unwrap();
        let mut n = 0usize;
        let mut biggest = 0usize;
        let node = doc
            .read(|item| {
                biggest = biggest.max(item.tape.evs.len());
                n += 1;
            })
            .unwrap()
            .unwrap();
        assert_eq!(n, 100_000);
        assert!(biggest <= 5);
        assert!(node.tape.evs.len() < 10 && node.tape.evs.capacity() <= 4096);
    }
}
