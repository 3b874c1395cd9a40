//! The data-only unpickler.
//!
//! It runs the pickle machine (stack, marks, memo) over borrowed bytes, with values that
//! are small `Copy` handles: scalars inline, strings as spans of the frame, tuples as
//! spans of a shared pool, lists as chains of pool segments (lists are mutable and shared
//! through the memo, so appends must stay visible to every holder). Nothing is executed,
//! nothing recurses, and every buffer is reused from frame to frame, so a frame costs no
//! heap allocation per item; only protocol-0 strings with escapes allocate, once, when
//! they become a path.
//!
//! Items are only interpreted once STOP is reached: a frame that turns out malformed half
//! way delivers nothing, a frame that is well formed delivers every good item and reports
//! each bad one.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Excerpt, Needed};
use crate::number::{self, IntText};
use crate::opcodes::{self as op, name};

/// One datapoint: carbon's `(path, (timestamp, value))` with both numbers through
/// `float()`, as carbon's receiver does.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// Borrowed from the frame unless the pickle escaped it (protocol-0 strings).
    pub path: Cow<'a, str>,
    /// Seconds since the epoch, as the sender wrote it (carbon truncates later).
    pub timestamp: f64,
    /// May be NaN or infinite: carbon's `float()` accepts `nan` and `inf`, dropping them is
    /// the caller's policy.
    pub value: f64,
}

/// Limits on what one pickle may make the decoder hold.
///
/// Memory for a frame of `n` bytes stays under `64 * n + 32 * max_stack + 16 * max_memo`
/// bytes, whatever the pickle says: every value costs at least one opcode byte, and
/// nothing is allocated from a length field. With the defaults and 1 MiB frames that is
/// at most about 70 MiB for a hostile frame; a 500-point carbon-relay frame uses ~100 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Values plus open MARKs on the stack. Python's pickler never needs more than about
    /// 1000 (it batches APPENDS by 1000); hand-rolled encoders may append a whole list
    /// in one batch.
    pub max_stack: usize,
    /// Highest memo index plus one. Python's pickler memoizes about three entries per
    /// point; carbon-relay's 500-point frames need about 1500.
    pub max_memo: usize,
}

impl DecodeOptions {
    /// Default [`DecodeOptions::max_stack`].
    pub const DEFAULT_MAX_STACK: usize = 1 << 16;
    /// Default [`DecodeOptions::max_memo`].
    pub const DEFAULT_MAX_MEMO: usize = 1 << 18;
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_stack: Self::DEFAULT_MAX_STACK,
            max_memo: Self::DEFAULT_MAX_MEMO,
        }
    }
}

/// Which half of a datapoint a [`SkipReason`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Timestamp,
    Value,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Timestamp => "timestamp",
            Field::Value => "value",
        })
    }
}

/// The Python type of a value found where something else was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    ByteArray,
    Tuple(usize),
    List(usize),
    Dict,
    Set,
    FrozenSet,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, len) = match *self {
            Kind::None => return f.write_str("None"),
            Kind::Bool => ("a bool", None),
            Kind::Int => ("an int", None),
            Kind::Float => ("a float", None),
            Kind::Str => ("a str", None),
            Kind::Bytes => ("a bytes object", None),
            Kind::ByteArray => ("a bytearray", None),
            Kind::Tuple(n) => ("a tuple", Some(n)),
            Kind::List(n) => ("a list", Some(n)),
            Kind::Dict => ("a dict", None),
            Kind::Set => ("a set", None),
            Kind::FrozenSet => ("a frozenset", None),
        };
        f.write_str(what)?;
        match len {
            Some(1) => f.write_str(" of 1 item"),
            Some(n) => write!(f, " of {n} items"),
            None => Ok(()),
        }
    }
}

/// Why one item of a frame was left out while the rest of the frame was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The item is not a 2-element tuple or list.
    ItemNotAPair(Kind),
    /// The item's second element is not a 2-element tuple or list.
    DatapointNotAPair(Kind),
    /// The path is neither str nor bytes.
    PathNotText(Kind),
    /// The path is not valid UTF-8 (or holds a lone surrogate).
    PathNotUtf8(Excerpt),
    /// The timestamp or value is of a type `float()` refuses.
    NotANumber { field: Field, found: Kind },
    /// The timestamp or value is a string `float()` refuses.
    BadNumber { field: Field, text: Excerpt },
    /// The timestamp or value is an integer of 2**1024 or more.
    Overflow { field: Field },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::ItemNotAPair(k) => {
                write!(f, "item is {k}, expected a (path, (timestamp, value)) pair")
            }
            SkipReason::DatapointNotAPair(k) => {
                write!(f, "datapoint is {k}, expected a (timestamp, value) pair")
            }
            SkipReason::PathNotText(k) => write!(f, "path is {k}, expected a str or bytes"),
            SkipReason::PathNotUtf8(e) => write!(f, "path is not valid UTF-8: {e}"),
            SkipReason::NotANumber { field, found } => {
                write!(f, "{field} is {found}, expected a number")
            }
            SkipReason::BadNumber { field, text } => write!(f, "{field} {text} is not a number"),
            SkipReason::Overflow { field } => {
                write!(f, "{field} is an integer too large for a float")
            }
        }
    }
}

/// One item left out of a frame, with where it was and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped<'a> {
    /// Position of the item in the frame's list, from 0.
    pub index: usize,
    /// The item's path, when it had a readable one: what an operator searches for.
    pub path: Option<Cow<'a, str>>,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "item {} ({:?}): {}", self.index, p, self.reason),
            None => write!(f, "item {}: {}", self.index, self.reason),
        }
    }
}

/// Counts of one decoded frame, from [`Decoder::decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub points: usize,
    pub skipped: usize,
    /// The protocol announced by PROTO, `None` for protocol 0/1 pickles (which have none).
    pub protocol: Option<u8>,
}

/// Everything one frame held, from [`Decoder::decode`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded<'a> {
    pub points: Vec<Point<'a>>,
    pub skipped: Vec<Skipped<'a>>,
    /// The protocol announced by PROTO, `None` for protocol 0/1 pickles (which have none).
    pub protocol: Option<u8>,
}

/// Decodes one pickle with default limits. For a stream of frames, keep a [`Decoder`]:
/// it reuses its buffers.
pub fn decode(pickle: &[u8]) -> Result<Decoded<'_>, Error> {
    Decoder::new().decode(pickle)
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// Text or bytes, in the frame itself or (after unescaping) in the decoder's scratch.
#[derive(Debug, Clone, Copy)]
struct Text {
    span: Span,
    scratch: bool,
}

/// 16 bytes: the memory bounds documented on [`DecodeOptions`] rely on it.
#[derive(Debug, Clone, Copy)]
enum Val {
    /// A memo slot never written. Never on the stack.
    Unset,
    None,
    Bool(bool),
    Int(i64),
    /// LONG1/LONG4 bytes (little-endian two's complement) too wide for an i64.
    LongBytes(Span),
    /// INT/LONG decimal text too wide for an i64.
    LongText(Span),
    Float(f64),
    Str(Text),
    Bytes(Text),
    ByteArray(Text),
    /// Elements in the pool.
    Tuple(Span),
    /// Index into the list heads.
    List(u32),
    // Dicts and sets are data too, but no metric lives in one: their contents are
    // checked for stack discipline and dropped.
    Dict,
    Set,
    FrozenSet,
}

const NO_SEG: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct ListHead {
    first: u32,
    last: u32,
    len: u32,
}

/// A run of a list's elements in the pool.
#[derive(Debug, Clone, Copy)]
struct Seg {
    start: u32,
    len: u32,
    next: u32,
}

/// A reusable unpickler for Graphite frames: keep one per connection.
#[derive(Debug, Default)]
pub struct Decoder {
    options: DecodeOptions,
    stack: Vec<Val>,
    marks: Vec<u32>,
    memo: Vec<Val>,
    memo_count: usize,
    pool: Vec<Val>,
    lists: Vec<ListHead>,
    segs: Vec<Seg>,
    scratch: Vec<u8>,
}

/// Buffers grown past these by a large frame are shrunk back after it, so one big frame
/// does not pin its memory for the life of the connection. They fit a 500-point frame.
const RETAIN_VALS: usize = 4096;
const RETAIN_SCRATCH: usize = 64 * 1024;

impl Decoder {
    /// A decoder with the default [`DecodeOptions`].
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// A decoder with the given limits.
    pub fn with_options(options: DecodeOptions) -> Decoder {
        Decoder {
            options,
            ..Decoder::default()
        }
    }

    /// The limits in force.
    pub fn options(&self) -> DecodeOptions {
        self.options
    }

    /// Heap bytes the decoder keeps between frames (for a memory gauge).
    pub fn retained_bytes(&self) -> usize {
        use std::mem::size_of;
        (self.stack.capacity() + self.memo.capacity() + self.pool.capacity()) * size_of::<Val>()
            + self.marks.capacity() * size_of::<u32>()
            + self.lists.capacity() * size_of::<ListHead>()
            + self.segs.capacity() * size_of::<Seg>()
            + self.scratch.capacity()
    }

    /// Decodes one pickle into its points and skipped items.
    pub fn decode<'a>(&mut self, pickle: &'a [u8]) -> Result<Decoded<'a>, Error> {
        let mut out = Decoded::default();
        let summary = self.decode_with(pickle, |item| match item {
            Ok(p) => out.points.push(p),
            Err(s) => out.skipped.push(s),
        })?;
        out.protocol = summary.protocol;
        Ok(out)
    }

    /// Decodes one pickle, handing each point (or skipped item) to `each` in frame order.
    ///
    /// `each` is only called once the whole pickle has been read and found well formed:
    /// an `Err` return means nothing was delivered.
    pub fn decode_with<'a, F>(&mut self, pickle: &'a [u8], mut each: F) -> Result<Summary, Error>
    where
        F: FnMut(Result<Point<'a>, Skipped<'a>>),
    {
        self.reset();
        let result = self.run(pickle).and_then(|(top, stop, protocol)| {
            let mut summary = Summary {
                protocol,
                ..Summary::default()
            };
            let items = match top {
                Val::List(_) | Val::Tuple(_) => self.elements(top),
                other => {
                    return Err(Error::NotAList {
                        offset: stop,
                        found: self.kind(other),
                    })
                }
            };
            for (index, item) in items.enumerate() {
                match self.point(pickle, index, item) {
                    Ok(p) => {
                        summary.points += 1;
                        each(Ok(p));
                    }
                    Err(s) => {
                        summary.skipped += 1;
                        each(Err(s));
                    }
                }
            }
            Ok(summary)
        });
        self.trim();
        result
    }

    fn reset(&mut self) {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.memo_count = 0;
        self.pool.clear();
        self.lists.clear();
        self.segs.clear();
        self.scratch.clear();
    }

    fn trim(&mut self) {
        self.reset();
        self.stack.shrink_to(RETAIN_VALS);
        self.marks.shrink_to(RETAIN_VALS);
        self.memo.shrink_to(RETAIN_VALS);
        self.pool.shrink_to(RETAIN_VALS);
        self.lists.shrink_to(RETAIN_VALS);
        self.segs.shrink_to(RETAIN_VALS);
        self.scratch.shrink_to(RETAIN_SCRATCH);
    }

    // ---- the machine -------------------------------------------------------------------

    /// Runs the pickle to its STOP: the result, STOP's offset and the protocol announced.
    fn run(&mut self, data: &[u8]) -> Result<(Val, usize, Option<u8>), Error> {
        if u32::try_from(data.len()).is_err() {
            return Err(Error::Invalid {
                offset: 0,
                opcode: "pickle",
                reason: "larger than 4 GiB",
                excerpt: Excerpt::new(data),
            });
        }
        let mut cur = Cursor { data, pos: 0 };
        let mut protocol = None;
        loop {
            let at = cur.pos;
            let Some(&code) = data.get(at) else {
                return Err(Error::MissingStop { offset: at });
            };
            cur.pos += 1;
            let ctx = Ctx { data, at, code };
            match code {
                op::MARK => {
                    self.check_depth(&ctx)?;
                    self.marks.push(self.stack.len() as u32);
                }
                op::STOP => {
                    let top = self.pop(&ctx)?;
                    return Ok((top, at, protocol));
                }
                op::POP => {
                    // As CPython: with the values above the last MARK gone, POP drops
                    // that MARK.
                    if self.marks.last() == Some(&(self.stack.len() as u32)) {
                        self.marks.pop();
                    } else {
                        self.pop(&ctx)?;
                    }
                }
                op::POP_MARK => {
                    let start = self.pop_mark(&ctx)?;
                    self.stack.truncate(start);
                }
                op::DUP => {
                    let top = self.top(&ctx)?;
                    self.push(&ctx, top)?;
                }
                op::FLOAT => {
                    let line = cur.line(&ctx)?;
                    let f = number::py_float(line)
                        .ok_or_else(|| ctx.invalid("argument is not a float"))?;
                    self.push(&ctx, Val::Float(f))?;
                }
                op::INT => {
                    let (start, line) = cur.line_span(&ctx)?;
                    let v = match line {
                        b"00" => Val::Bool(false),
                        b"01" => Val::Bool(true),
                        _ => int_text(&ctx, start, line)?,
                    };
                    self.push(&ctx, v)?;
                }
                op::LONG => {
                    let (start, line) = cur.line_span(&ctx)?;
                    let line = line.strip_suffix(b"L").unwrap_or(line);
                    let v = int_text(&ctx, start, line)?;
                    self.push(&ctx, v)?;
                }
                op::NONE => self.push(&ctx, Val::None)?,
                op::STRING => {
                    let (start, line) = cur.line_span(&ctx)?;
                    let t = self.quoted_string(&ctx, start, line)?;
                    self.push(&ctx, Val::Str(t))?;
                }
                op::UNICODE => {
                    let (start, line) = cur.line_span(&ctx)?;
                    let t = self.raw_unicode_escape(&ctx, start, line)?;
                    self.push(&ctx, Val::Str(t))?;
                }
                op::BINFLOAT => {
                    let b = cur.fixed::<8>(&ctx)?;
                    self.push(&ctx, Val::Float(f64::from_be_bytes(b)))?;
                }
                op::BININT => {
                    let b = cur.fixed::<4>(&ctx)?;
                    self.push(&ctx, Val::Int(i32::from_le_bytes(b).into()))?;
                }
                op::BININT1 => {
                    let [b] = cur.fixed::<1>(&ctx)?;
                    self.push(&ctx, Val::Int(b.into()))?;
                }
                op::BININT2 => {
                    let b = cur.fixed::<2>(&ctx)?;
                    self.push(&ctx, Val::Int(u16::from_le_bytes(b).into()))?;
                }
                op::BINSTRING => {
                    let n = cur.signed_len4(&ctx)?;
                    let s = cur.span(&ctx, n)?;
                    self.push(&ctx, Val::Str(frame_text(s)))?;
                }
                op::SHORT_BINSTRING | op::SHORT_BINUNICODE => {
                    let [n] = cur.fixed::<1>(&ctx)?;
                    let s = cur.span(&ctx, n.into())?;
                    self.push(&ctx, Val::Str(frame_text(s)))?;
                }
                op::BINUNICODE => {
                    let n = u32::from_le_bytes(cur.fixed::<4>(&ctx)?);
                    let s = cur.span(&ctx, n.into())?;
                    self.push(&ctx, Val::Str(frame_text(s)))?;
                }
                op::BINUNICODE8 => {
                    let n = u64::from_le_bytes(cur.fixed::<8>(&ctx)?);
                    let s = cur.span(&ctx, n)?;
                    self.push(&ctx, Val::Str(frame_text(s)))?;
                }
                op::SHORT_BINBYTES => {
                    let [n] = cur.fixed::<1>(&ctx)?;
                    let s = cur.span(&ctx, n.into())?;
                    self.push(&ctx, Val::Bytes(frame_text(s)))?;
                }
                op::BINBYTES => {
                    let n = u32::from_le_bytes(cur.fixed::<4>(&ctx)?);
                    let s = cur.span(&ctx, n.into())?;
                    self.push(&ctx, Val::Bytes(frame_text(s)))?;
                }
                op::BINBYTES8 => {
                    let n = u64::from_le_bytes(cur.fixed::<8>(&ctx)?);
                    let s = cur.span(&ctx, n)?;
                    self.push(&ctx, Val::Bytes(frame_text(s)))?;
                }
                op::BYTEARRAY8 => {
                    let n = u64::from_le_bytes(cur.fixed::<8>(&ctx)?);
                    let s = cur.span(&ctx, n)?;
                    self.push(&ctx, Val::ByteArray(frame_text(s)))?;
                }
                op::LONG1 => {
                    let [n] = cur.fixed::<1>(&ctx)?;
                    let s = cur.span(&ctx, n.into())?;
                    self.push(&ctx, long_bytes(data, s))?;
                }
                op::LONG4 => {
                    let n = cur.signed_len4(&ctx)?;
                    let s = cur.span(&ctx, n)?;
                    self.push(&ctx, long_bytes(data, s))?;
                }
                op::NEWTRUE => self.push(&ctx, Val::Bool(true))?,
                op::NEWFALSE => self.push(&ctx, Val::Bool(false))?,
                op::EMPTY_TUPLE => self.push(&ctx, Val::Tuple(Span { start: 0, len: 0 }))?,
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    if self.stack.len() < self.fence() + n {
                        return Err(ctx.invalid("stack underflow"));
                    }
                    let start = self.stack.len() - n;
                    let t = self.tuple_from_stack(start);
                    self.stack.push(t);
                }
                op::TUPLE => {
                    let start = self.pop_mark(&ctx)?;
                    let t = self.tuple_from_stack(start);
                    self.push(&ctx, t)?;
                }
                op::EMPTY_LIST => {
                    let id = self.new_list();
                    self.push(&ctx, Val::List(id))?;
                }
                op::LIST => {
                    let start = self.pop_mark(&ctx)?;
                    let id = self.new_list();
                    self.extend_list(id, start);
                    self.push(&ctx, Val::List(id))?;
                }
                op::APPEND => {
                    if self.stack.len() < self.fence() + 2 {
                        return Err(ctx.invalid("stack underflow"));
                    }
                    let Val::List(id) = self.stack[self.stack.len() - 2] else {
                        return Err(ctx.invalid("target is not a list"));
                    };
                    self.extend_list(id, self.stack.len() - 1);
                }
                op::APPENDS => {
                    // As CPython: an empty batch is not checked against its target.
                    let start = self.pop_mark(&ctx)?;
                    let empty = start == self.stack.len();
                    match self.below_mark(start) {
                        None => return Err(ctx.invalid("stack underflow")),
                        _ if empty => {}
                        Some(Val::List(id)) => self.extend_list(id, start),
                        Some(_) => return Err(ctx.invalid("target is not a list")),
                    }
                }
                op::EMPTY_DICT => self.push(&ctx, Val::Dict)?,
                op::DICT => {
                    let start = self.pop_mark(&ctx)?;
                    if !(self.stack.len() - start).is_multiple_of(2) {
                        return Err(ctx.invalid("odd number of items"));
                    }
                    self.stack.truncate(start);
                    self.push(&ctx, Val::Dict)?;
                }
                op::SETITEM => {
                    if self.stack.len() < self.fence() + 3 {
                        return Err(ctx.invalid("stack underflow"));
                    }
                    let Val::Dict = self.stack[self.stack.len() - 3] else {
                        return Err(ctx.invalid("target is not a dict"));
                    };
                    self.stack.truncate(self.stack.len() - 2);
                }
                op::SETITEMS => {
                    let start = self.pop_mark(&ctx)?;
                    let n = self.stack.len() - start;
                    match self.below_mark(start) {
                        None => return Err(ctx.invalid("stack underflow")),
                        _ if n == 0 => {}
                        _ if !n.is_multiple_of(2) => return Err(ctx.invalid("odd number of items")),
                        Some(Val::Dict) => {}
                        Some(_) => return Err(ctx.invalid("target is not a dict")),
                    }
                    self.stack.truncate(start);
                }
                op::EMPTY_SET => self.push(&ctx, Val::Set)?,
                op::ADDITEMS => {
                    let start = self.pop_mark(&ctx)?;
                    let empty = start == self.stack.len();
                    match self.below_mark(start) {
                        None => return Err(ctx.invalid("stack underflow")),
                        _ if empty => {}
                        Some(Val::Set) => {}
                        Some(_) => return Err(ctx.invalid("target is not a set")),
                    }
                    self.stack.truncate(start);
                }
                op::FROZENSET => {
                    let start = self.pop_mark(&ctx)?;
                    self.stack.truncate(start);
                    self.push(&ctx, Val::FrozenSet)?;
                }
                op::GET => {
                    let i = memo_index_text(&ctx, cur.line(&ctx)?)?;
                    self.memo_get(&ctx, i)?;
                }
                op::BINGET => {
                    let [i] = cur.fixed::<1>(&ctx)?;
                    self.memo_get(&ctx, i.into())?;
                }
                op::LONG_BINGET => {
                    let i = u32::from_le_bytes(cur.fixed::<4>(&ctx)?);
                    self.memo_get(&ctx, i.into())?;
                }
                op::PUT => {
                    let i = memo_index_text(&ctx, cur.line(&ctx)?)?;
                    self.memo_put(&ctx, i)?;
                }
                op::BINPUT => {
                    let [i] = cur.fixed::<1>(&ctx)?;
                    self.memo_put(&ctx, i.into())?;
                }
                op::LONG_BINPUT => {
                    let i = u32::from_le_bytes(cur.fixed::<4>(&ctx)?);
                    self.memo_put(&ctx, i.into())?;
                }
                op::MEMOIZE => self.memo_put(&ctx, self.memo_count as u64)?,
                op::PROTO => {
                    let [v] = cur.fixed::<1>(&ctx)?;
                    if v > op::HIGHEST_PROTOCOL {
                        return Err(Error::UnsupportedProtocol {
                            offset: at,
                            version: v,
                        });
                    }
                    protocol = Some(v);
                }
                op::FRAME => {
                    // A protocol-4 frame only announces how much follows; check it does.
                    let n = u64::from_le_bytes(cur.fixed::<8>(&ctx)?);
                    let left = data.len() - cur.pos;
                    if n > left as u64 {
                        return Err(ctx.truncated(Needed::Bytes(n), left));
                    }
                }
                op::NEXT_BUFFER => {
                    return Err(ctx.invalid("out-of-band buffers are not supported"));
                }
                op::READONLY_BUFFER => match self.top(&ctx)? {
                    Val::Bytes(_) | Val::ByteArray(_) => {}
                    _ => return Err(ctx.invalid("not a buffer")),
                },
                c if op::is_forbidden(c) => {
                    return Err(Error::ForbiddenOpcode {
                        offset: at,
                        opcode: name(c).unwrap_or("?"),
                        excerpt: Excerpt::at(data, at),
                    });
                }
                c => {
                    return Err(Error::UnknownOpcode {
                        offset: at,
                        code: c,
                        excerpt: Excerpt::at(data, at),
                    });
                }
            }
        }
    }

    fn fence(&self) -> usize {
        self.marks.last().map_or(0, |&m| m as usize)
    }

    fn check_depth(&self, ctx: &Ctx<'_>) -> Result<(), Error> {
        if self.stack.len() + self.marks.len() >= self.options.max_stack {
            return Err(Error::StackLimit {
                offset: ctx.at,
                max: self.options.max_stack,
                excerpt: Excerpt::at(ctx.data, ctx.at),
            });
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, ctx: &Ctx<'_>, v: Val) -> Result<(), Error> {
        self.check_depth(ctx)?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self, ctx: &Ctx<'_>) -> Result<Val, Error> {
        if self.stack.len() <= self.fence() {
            return Err(ctx.invalid("stack underflow"));
        }
        Ok(self.stack.pop().unwrap_or(Val::None))
    }

    fn top(&self, ctx: &Ctx<'_>) -> Result<Val, Error> {
        if self.stack.len() <= self.fence() {
            return Err(ctx.invalid("stack underflow"));
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    /// Pops the last MARK; the values above it are `stack[start..]`.
    fn pop_mark(&mut self, ctx: &Ctx<'_>) -> Result<usize, Error> {
        self.marks
            .pop()
            .map(|m| m as usize)
            .ok_or_else(|| ctx.invalid("no MARK on the stack"))
    }

    /// The value just below a popped MARK at `start`, if the (new) current frame has one.
    fn below_mark(&self, start: usize) -> Option<Val> {
        (start > self.fence()).then(|| self.stack[start - 1])
    }

    /// Moves `stack[start..]` into the pool as a tuple.
    fn tuple_from_stack(&mut self, start: usize) -> Val {
        let span = Span {
            start: self.pool.len() as u32,
            len: (self.stack.len() - start) as u32,
        };
        self.pool.extend_from_slice(&self.stack[start..]);
        self.stack.truncate(start);
        Val::Tuple(span)
    }

    fn new_list(&mut self) -> u32 {
        self.lists.push(ListHead {
            first: NO_SEG,
            last: NO_SEG,
            len: 0,
        });
        self.lists.len() as u32 - 1
    }

    /// Moves `stack[start..]` to the end of list `id`.
    fn extend_list(&mut self, id: u32, start: usize) {
        let n = (self.stack.len() - start) as u32;
        if n == 0 {
            return;
        }
        let pool_start = self.pool.len() as u32;
        self.pool.extend_from_slice(&self.stack[start..]);
        self.stack.truncate(start);
        let head = &mut self.lists[id as usize];
        head.len += n;
        if head.last != NO_SEG {
            let last = &mut self.segs[head.last as usize];
            if last.start + last.len == pool_start {
                // Consecutive appends (protocol 0 writes one APPEND per item) grow one run.
                last.len += n;
                return;
            }
        }
        let seg = self.segs.len() as u32;
        self.segs.push(Seg {
            start: pool_start,
            len: n,
            next: NO_SEG,
        });
        if head.last == NO_SEG {
            head.first = seg;
        } else {
            self.segs[head.last as usize].next = seg;
        }
        head.last = seg;
    }

    fn memo_get(&mut self, ctx: &Ctx<'_>, index: u64) -> Result<(), Error> {
        match usize::try_from(index).ok().and_then(|i| self.memo.get(i)) {
            Some(&v) if !matches!(v, Val::Unset) => self.push(ctx, v),
            _ => Err(Error::MemoMissing {
                offset: ctx.at,
                index,
            }),
        }
    }

    fn memo_put(&mut self, ctx: &Ctx<'_>, index: u64) -> Result<(), Error> {
        let top = self.top(ctx)?;
        let i = match usize::try_from(index) {
            Ok(i) if i < self.options.max_memo => i,
            _ => {
                return Err(Error::MemoLimit {
                    offset: ctx.at,
                    index,
                    max: self.options.max_memo,
                })
            }
        };
        if i >= self.memo.len() {
            if i >= self.memo.capacity() {
                // Grow by doubling, but never past the limit: the cap is a memory bound.
                let want = (self.memo.capacity() * 2).clamp(i + 1, self.options.max_memo);
                self.memo.reserve_exact(want - self.memo.len());
            }
            self.memo.resize(i + 1, Val::Unset);
        }
        if matches!(self.memo[i], Val::Unset) {
            self.memo_count += 1;
        }
        self.memo[i] = top;
        Ok(())
    }

    /// STRING: a quoted, backslash-escaped Python 2 `repr()` of a byte string. carbon
    /// unpickles with `encoding='utf-8'`, so the bytes are text.
    fn quoted_string(&mut self, ctx: &Ctx<'_>, start: usize, line: &[u8]) -> Result<Text, Error> {
        let inner = match line {
            [q, inner @ .., last] if q == last && (*q == b'\'' || *q == b'"') => inner,
            _ => return Err(ctx.invalid("argument must be quoted")),
        };
        if !inner.contains(&b'\\') {
            return Ok(frame_text(Span {
                start: start as u32 + 1,
                len: inner.len() as u32,
            }));
        }
        let from = self.scratch.len();
        let mut i = 0;
        while i < inner.len() {
            let c = inner[i];
            i += 1;
            if c != b'\\' {
                self.scratch.push(c);
                continue;
            }
            let Some(&e) = inner.get(i) else {
                return Err(ctx.invalid("trailing \\ in string"));
            };
            i += 1;
            let byte = match e {
                b'\n' => continue,
                b'\\' | b'\'' | b'"' => e,
                b'a' => 0x07,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match inner.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    // As CPython: an escape over \377 keeps its low byte.
                    v as u8
                }
                b'x' => {
                    let hex = inner.get(i..i + 2).and_then(|h| {
                        std::str::from_utf8(h)
                            .ok()
                            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    });
                    i += 2;
                    hex.ok_or_else(|| ctx.invalid("invalid \\x escape"))?
                }
                _ => {
                    self.scratch.push(b'\\');
                    e
                }
            };
            self.scratch.push(byte);
        }
        Ok(self.scratch_text(from))
    }

    /// UNICODE: Python's `raw-unicode-escape`: bytes are Latin-1 characters, `\uXXXX` and
    /// `\UXXXXXXXX` (after an odd run of backslashes) are code points.
    fn raw_unicode_escape(
        &mut self,
        ctx: &Ctx<'_>,
        start: usize,
        line: &[u8],
    ) -> Result<Text, Error> {
        if line.is_ascii() && !line.contains(&b'\\') {
            return Ok(frame_text(Span {
                start: start as u32,
                len: line.len() as u32,
            }));
        }
        let from = self.scratch.len();
        let mut i = 0;
        while i < line.len() {
            let c = line[i];
            if c != b'\\' {
                push_code_point(&mut self.scratch, c.into());
                i += 1;
                continue;
            }
            let run = line[i..].iter().take_while(|&&b| b == b'\\').count();
            let after = i + run;
            let digits = match line.get(after) {
                Some(b'u') if run % 2 == 1 => 4,
                Some(b'U') if run % 2 == 1 => 8,
                _ => {
                    self.scratch.extend(std::iter::repeat_n(b'\\', run));
                    i = after;
                    continue;
                }
            };
            self.scratch.extend(std::iter::repeat_n(b'\\', run - 1));
            let hex = line
                .get(after + 1..after + 1 + digits)
                .filter(|h| h.iter().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            let cp = match hex {
                Some(cp) if cp <= 0x10ffff => cp,
                Some(_) => return Err(ctx.invalid("\\Uxxxxxxxx out of range")),
                None if digits == 4 => return Err(ctx.invalid("truncated \\uXXXX escape")),
                None => return Err(ctx.invalid("truncated \\UXXXXXXXX escape")),
            };
            push_code_point(&mut self.scratch, cp);
            i = after + 1 + digits;
        }
        Ok(self.scratch_text(from))
    }

    fn scratch_text(&self, from: usize) -> Text {
        Text {
            span: Span {
                start: from as u32,
                len: (self.scratch.len() - from) as u32,
            },
            scratch: true,
        }
    }

    // ---- reading the result ------------------------------------------------------------

    fn elements(&self, v: Val) -> Elements<'_> {
        match v {
            Val::Tuple(span) => Elements {
                dec: self,
                run: span.range(),
                next_seg: NO_SEG,
            },
            Val::List(id) => {
                let first = self.lists[id as usize].first;
                Elements {
                    dec: self,
                    run: 0..0,
                    next_seg: first,
                }
            }
            _ => Elements {
                dec: self,
                run: 0..0,
                next_seg: NO_SEG,
            },
        }
    }

    fn kind(&self, v: Val) -> Kind {
        match v {
            Val::Unset | Val::None => Kind::None,
            Val::Bool(_) => Kind::Bool,
            Val::Int(_) | Val::LongBytes(_) | Val::LongText(_) => Kind::Int,
            Val::Float(_) => Kind::Float,
            Val::Str(_) => Kind::Str,
            Val::Bytes(_) => Kind::Bytes,
            Val::ByteArray(_) => Kind::ByteArray,
            Val::Tuple(s) => Kind::Tuple(s.len as usize),
            Val::List(id) => Kind::List(self.lists[id as usize].len as usize),
            Val::Dict => Kind::Dict,
            Val::Set => Kind::Set,
            Val::FrozenSet => Kind::FrozenSet,
        }
    }

    /// The two elements of a 2-element tuple or list.
    fn pair(&self, v: Val) -> Option<(Val, Val)> {
        match v {
            Val::Tuple(s) if s.len == 2 => {
                let i = s.start as usize;
                Some((self.pool[i], self.pool[i + 1]))
            }
            Val::List(id) if self.lists[id as usize].len == 2 => {
                let mut it = self.elements(v);
                Some((it.next()?, it.next()?))
            }
            _ => None,
        }
    }

    fn bytes<'a>(&'a self, data: &'a [u8], t: Text) -> &'a [u8] {
        if t.scratch {
            &self.scratch[t.span.range()]
        } else {
            &data[t.span.range()]
        }
    }

    fn path<'a>(&self, data: &'a [u8], v: Val) -> Result<Cow<'a, str>, SkipReason> {
        let t = match v {
            Val::Str(t) | Val::Bytes(t) | Val::ByteArray(t) => t,
            other => return Err(SkipReason::PathNotText(self.kind(other))),
        };
        let bad = |b: &[u8]| SkipReason::PathNotUtf8(Excerpt::new(b));
        if t.scratch {
            let b = &self.scratch[t.span.range()];
            std::str::from_utf8(b)
                .map(|s| Cow::Owned(s.to_owned()))
                .map_err(|_| bad(b))
        } else {
            let b = &data[t.span.range()];
            std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| bad(b))
        }
    }

    fn number(&self, data: &[u8], v: Val, field: Field) -> Result<f64, SkipReason> {
        match v {
            Val::Float(f) => Ok(f),
            Val::Int(i) => Ok(i as f64),
            Val::Bool(b) => Ok(if b { 1.0 } else { 0.0 }),
            Val::LongBytes(s) => {
                number::long_le_to_f64(&data[s.range()]).ok_or(SkipReason::Overflow { field })
            }
            Val::LongText(s) => {
                number::big_int_text_to_f64(&data[s.range()]).ok_or(SkipReason::Overflow { field })
            }
            Val::Str(t) | Val::Bytes(t) | Val::ByteArray(t) => {
                let text = self.bytes(data, t);
                number::py_float(text).ok_or(SkipReason::BadNumber {
                    field,
                    text: Excerpt::new(text),
                })
            }
            other => Err(SkipReason::NotANumber {
                field,
                found: self.kind(other),
            }),
        }
    }

    fn point<'a>(&self, data: &'a [u8], index: usize, item: Val) -> Result<Point<'a>, Skipped<'a>> {
        let skip = |path, reason| Skipped {
            index,
            path,
            reason,
        };
        let Some((path, datapoint)) = self.pair(item) else {
            return Err(skip(None, SkipReason::ItemNotAPair(self.kind(item))));
        };
        let path = self.path(data, path).map_err(|r| skip(None, r))?;
        let Some((ts, value)) = self.pair(datapoint) else {
            let reason = SkipReason::DatapointNotAPair(self.kind(datapoint));
            return Err(skip(Some(path), reason));
        };
        let timestamp = match self.number(data, ts, Field::Timestamp) {
            Ok(t) => t,
            Err(r) => return Err(skip(Some(path), r)),
        };
        let value = match self.number(data, value, Field::Value) {
            Ok(v) => v,
            Err(r) => return Err(skip(Some(path), r)),
        };
        Ok(Point {
            path,
            timestamp,
            value,
        })
    }
}

/// Elements of a tuple (one run) or a list (a chain of runs), in order.
struct Elements<'d> {
    dec: &'d Decoder,
    run: std::ops::Range<usize>,
    next_seg: u32,
}

impl Iterator for Elements<'_> {
    type Item = Val;

    fn next(&mut self) -> Option<Val> {
        loop {
            if let Some(i) = self.run.next() {
                return Some(self.dec.pool[i]);
            }
            if self.next_seg == NO_SEG {
                return None;
            }
            let seg = self.dec.segs[self.next_seg as usize];
            self.run = seg.start as usize..(seg.start + seg.len) as usize;
            self.next_seg = seg.next;
        }
    }
}

fn frame_text(span: Span) -> Text {
    Text {
        span,
        scratch: false,
    }
}

fn long_bytes(data: &[u8], s: Span) -> Val {
    match number::long_le_to_i64(&data[s.range()]) {
        Some(i) => Val::Int(i),
        None => Val::LongBytes(s),
    }
}

fn int_text(ctx: &Ctx<'_>, start: usize, text: &[u8]) -> Result<Val, Error> {
    match number::parse_int_text(text) {
        Some(IntText::Small(i)) => Ok(Val::Int(i)),
        Some(IntText::Big) => Ok(Val::LongText(Span {
            start: start as u32,
            len: text.len() as u32,
        })),
        None => Err(ctx.invalid("argument is not a decimal integer")),
    }
}

fn memo_index_text(ctx: &Ctx<'_>, text: &[u8]) -> Result<u64, Error> {
    let text = number::trim_py_space(text);
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(ctx.invalid("argument is not a memo index"));
    }
    // Saturate: anything this large is over the memo limit anyway.
    Ok(text.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Appends a code point as UTF-8, lone surrogates included (generalized UTF-8, as
/// Python's `surrogatepass`), so a path holding one fails UTF-8 validation later and only
/// its item is skipped.
fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7f => out.push(cp as u8),
        0x80..=0x7ff => out.extend_from_slice(&[0xc0 | (cp >> 6) as u8, 0x80 | (cp & 0x3f) as u8]),
        0x800..=0xffff => out.extend_from_slice(&[
            0xe0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ]),
        _ => out.extend_from_slice(&[
            0xf0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3f) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ]),
    }
}

/// The opcode being executed, for error reports.
struct Ctx<'a> {
    data: &'a [u8],
    at: usize,
    code: u8,
}

impl Ctx<'_> {
    fn name(&self) -> &'static str {
        name(self.code).unwrap_or("?")
    }

    fn invalid(&self, reason: &'static str) -> Error {
        Error::Invalid {
            offset: self.at,
            opcode: self.name(),
            reason,
            excerpt: Excerpt::at(self.data, self.at),
        }
    }

    fn truncated(&self, needed: Needed, available: usize) -> Error {
        Error::Truncated {
            offset: self.at,
            opcode: self.name(),
            needed,
            available,
        }
    }
}

/// Reads opcode arguments, turning a short read into [`Error::Truncated`].
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, ctx: &Ctx<'_>) -> Result<[u8; N], Error> {
        match self.data[self.pos..].first_chunk::<N>() {
            Some(b) => {
                self.pos += N;
                Ok(*b)
            }
            None => Err(ctx.truncated(Needed::Bytes(N as u64), self.left())),
        }
    }

    /// BINSTRING and LONG4 lengths are signed; Python refuses negative ones.
    fn signed_len4(&mut self, ctx: &Ctx<'_>) -> Result<u64, Error> {
        let n = i32::from_le_bytes(self.fixed::<4>(ctx)?);
        u64::try_from(n).map_err(|_| ctx.invalid("negative length"))
    }

    /// The next `n` bytes as a span of the data: the length is compared with what is
    /// left, never used to allocate.
    #[inline]
    fn span(&mut self, ctx: &Ctx<'_>, n: u64) -> Result<Span, Error> {
        let left = self.left();
        if n > left as u64 {
            return Err(ctx.truncated(Needed::Bytes(n), left));
        }
        let span = Span {
            start: self.pos as u32,
            len: n as u32,
        };
        self.pos += n as usize;
        Ok(span)
    }

    /// A protocol-0 argument line without its `\n`, and where it starts.
    fn line_span(&mut self, ctx: &Ctx<'_>) -> Result<(usize, &'a [u8]), Error> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let start = self.pos;
                self.pos += n + 1;
                Ok((start, &rest[..n]))
            }
            None => Err(ctx.truncated(Needed::Line, rest.len())),
        }
    }

    fn line(&mut self, ctx: &Ctx<'_>) -> Result<&'a [u8], Error> {
        self.line_span(ctx).map(|(_, l)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_small() {
        assert_eq!(std::mem::size_of::<Val>(), 16);
        assert_eq!(std::mem::size_of::<Seg>(), 12);
        assert_eq!(std::mem::size_of::<ListHead>(), 12);
    }

    #[test]
    fn memo_never_grows_past_its_limit() {
        let mut d = Decoder::with_options(DecodeOptions {
            max_stack: 16,
            max_memo: 1000,
        });
        // A put at the last allowed index allocates exactly the limit.
        assert!(d.decode(b"\x80\x02]r\xe7\x03\x00\x00.").is_ok());
        let mut pickle = b"\x80\x04]".to_vec();
        pickle.extend(std::iter::repeat_n(0x94, 1000));
        pickle.push(b'.');
        d.reset();
        d.run(&pickle).unwrap();
        assert_eq!(d.memo.len(), 1000);
        assert!(d.memo.capacity() <= 1000, "{}", d.memo.capacity());
        // Under the limit the memo grows by doubling, not to the limit at once.
        let mut d = Decoder::new();
        d.run(&pickle).unwrap();
        assert!(d.memo.capacity() < 2048, "{}", d.memo.capacity());
    }

    #[test]
    fn one_hundred_thousand_nested_tuples_cost_no_stack() {
        let mut pickle = b"\x80\x02]K\x01".to_vec();
        pickle.extend(std::iter::repeat_n(op::TUPLE1, 100_000));
        pickle.extend_from_slice(b"a.");
        let d = Decoder::with_options(DecodeOptions {
            max_stack: 4,
            max_memo: 4,
        })
        .decode(&pickle)
        .map(|d| d.skipped.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            d.unwrap(),
            ["item 0: item is a tuple of 1 item, expected a (path, (timestamp, value)) pair"]
        );
    }
}
