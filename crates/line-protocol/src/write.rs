//! Canonical line protocol out: escaping per element, typed values, optional sorted tags.
//!
//! The writer's promise is that InfluxDB 1.x (and this crate's parser, which reads lines the
//! same way) reads back exactly the values that were written. Escaping alone cannot keep that
//! promise for every string, because InfluxDB has no escape for a backslash in names: a name
//! that ends in a backslash would escape the separator after it, a backslash before a comma or
//! space (or `=`, or `"` in measurements and field keys) is read back as an escape, a newline
//! ends the point, and a measurement starting with `#` turns the line into a comment. Such a
//! value makes the write fail with [`Error::Unwritable`] and leaves the buffer as it was,
//! instead of sending InfluxDB something it stores differently.

use smallvec::SmallVec;

use crate::error::{excerpt, Element};
use crate::escaped::EscapedStr;
use crate::number::{format_f64, FloatBuffer};
use crate::parse::{FieldValue, ParsedLine};
use crate::Error;

/// Where the writer appends: a `Vec<u8>` or (feature `bytes`) a `bytes::BytesMut`.
pub trait LineBuffer {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
    /// Current length, to roll back a line that cannot be written.
    fn len(&self) -> usize;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops everything after `len`.
    fn truncate(&mut self, len: usize);
}

impl LineBuffer for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

#[cfg(feature = "bytes")]
impl LineBuffer for bytes::BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn len(&self) -> usize {
        bytes::BytesMut::len(self)
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        bytes::BytesMut::truncate(self, len);
    }
}

/// Writer settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Write tags sorted by key (bytewise), the order InfluxDB keeps them in its series key;
    /// sending them sorted spares the server a sort per point.
    pub sort_tags: bool,
}

/// The bytes that matter to InfluxDB's reading of one kind of name.
struct Rules {
    /// The bytes of `special`, for the word-at-a-time search.
    special_bytes: &'static [u8],
    /// `\x` is read back as `x`, so a literal backslash may not precede `x`.
    resolves: [bool; 256],
    /// Bytes written as `\x`, plus backslash and newline: where the fast loop stops.
    special: [bool; 256],
}

impl Rules {
    /// Index of the first special byte at or after `from` (or `b.len()`): eight bytes at a
    /// time while there are eight, since names are mostly ordinary bytes.
    #[inline]
    fn next_special(&self, b: &[u8], mut from: usize) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = b.get(from..from + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let mut hits = 0;
            for &c in self.special_bytes {
                let v = w ^ (ONES * u64::from(c));
                hits |= v.wrapping_sub(ONES) & !v & HIGH;
            }
            if hits != 0 {
                return from + (hits.trailing_zeros() / 8) as usize;
            }
            from += 8;
        }
        while from < b.len() && !self.special[b[from] as usize] {
            from += 1;
        }
        from
    }
}

const fn table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// Measurements: escape comma and space; InfluxDB also unescapes `\"` and `\=` there.
static MEASUREMENT: Rules = Rules {
    special_bytes: b", \\\n",
    resolves: table(b", \"="),
    special: table(b", \\\n"),
};

/// Tag keys and values: escape comma, equals, space.
static TAG: Rules = Rules {
    special_bytes: b",= \\\n",
    resolves: table(b",= "),
    special: table(b",= \\\n"),
};

/// Field keys: escape comma, equals, space; InfluxDB also unescapes `\"` there.
static FIELD_KEY: Rules = Rules {
    special_bytes: b",= \\\n",
    resolves: table(b",= \""),
    special: table(b",= \\\n"),
};

/// Appends `chunks` (one value, possibly in pieces) escaped by `rules`.
fn put_name<'c, B: LineBuffer + ?Sized>(
    buf: &mut B,
    chunks: impl Iterator<Item = &'c str> + Clone,
    rules: &Rules,
    element: Element,
) -> Result<(), Error> {
    let unwritable = |offset: usize, problem: &'static str| Error::Unwritable {
        element,
        offset,
        excerpt: excerpt(&chunks.clone().collect::<String>()),
        problem,
    };
    let mut offset = 0;
    let mut after_backslash = false;
    for chunk in chunks.clone() {
        let b = chunk.as_bytes();
        let mut run = 0;
        for (i, &c) in b.iter().enumerate() {
            if after_backslash {
                after_backslash = false;
                if rules.resolves[c as usize] {
                    return Err(unwritable(
                        offset + i - 1,
                        "a backslash before this character is read back as an escape",
                    ));
                }
            }
            if !rules.special[c as usize] {
                continue;
            }
            buf.put(&b[run..i]);
            run = i + 1;
            match c {
                b'\n' => return Err(unwritable(offset + i, "a newline ends the point")),
                b'\\' => {
                    buf.put(b"\\");
                    after_backslash = true;
                }
                _ => buf.put(&[b'\\', c]),
            }
        }
        buf.put(&b[run..]);
        offset += b.len();
    }
    if after_backslash {
        return Err(unwritable(
            offset - 1,
            "a trailing backslash would escape the separator after it",
        ));
    }
    if offset == 0 {
        return Err(unwritable(0, "it is empty"));
    }
    Ok(())
}

/// Why [`put_name_str`] stopped.
enum Stop {
    /// The value cannot be written.
    Unwritable(Error),
    /// The text came from a parsed line and holds a backslash: it may need unescaping first.
    Backslash,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Unwritable(e)
    }
}

/// [`put_name`] for a value in one piece: the common case, kept simple for speed. With
/// `parsed`, `s` is the raw text of a parsed name and the first backslash stops the write (the
/// caller rolls back and unescapes), which spares a separate scan for escapes.
#[inline]
fn put_name_str<B: LineBuffer + ?Sized>(
    buf: &mut B,
    s: &str,
    rules: &Rules,
    element: Element,
    parsed: bool,
) -> Result<(), Stop> {
    let b = s.as_bytes();
    let unwritable = |offset: usize, problem: &'static str| Error::Unwritable {
        element,
        offset,
        excerpt: excerpt(s),
        problem,
    };
    if b.is_empty() {
        return Err(unwritable(0, "it is empty").into());
    }
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        i = rules.next_special(b, i);
        let Some(&c) = b.get(i) else {
            break;
        };
        if c == b'\\' && parsed {
            return Err(Stop::Backslash);
        }
        buf.put(&b[run..i]);
        run = i + 1;
        match c {
            b'\n' => return Err(unwritable(i, "a newline ends the point").into()),
            b'\\' => match b.get(i + 1) {
                None => {
                    return Err(unwritable(
                        i,
                        "a trailing backslash would escape the separator after it",
                    )
                    .into())
                }
                Some(&n) if rules.resolves[n as usize] => {
                    return Err(unwritable(
                        i,
                        "a backslash before this character is read back as an escape",
                    )
                    .into())
                }
                Some(_) => buf.put(b"\\"),
            },
            _ => buf.put(&[b'\\', c]),
        }
        i += 1;
    }
    buf.put(&b[run..]);
    Ok(())
}

/// Appends a string field value, quoted, with `"` and `\` escaped.
fn put_string<'c, B: LineBuffer + ?Sized>(buf: &mut B, chunks: impl Iterator<Item = &'c str>) {
    buf.put(b"\"");
    for chunk in chunks {
        let b = chunk.as_bytes();
        let mut run = 0;
        let mut from = 0;
        while let Some(p) = memchr::memchr2(b'"', b'\\', &b[from..]) {
            let i = from + p;
            buf.put(&b[run..i]);
            buf.put(&[b'\\', b[i]]);
            run = i + 1;
            from = i + 1;
        }
        buf.put(&b[run..]);
    }
    buf.put(b"\"");
}

/// Appends a float so that it reads back as the same `f64` and as a float: the shortest
/// round-tripping digits (ryu), without a `.0` tail (`1` is a float in line protocol; only a
/// trailing `i` or `u` makes an integer).
fn put_f64<B: LineBuffer + ?Sized>(buf: &mut B, v: f64) -> Result<(), Error> {
    if !v.is_finite() {
        return Err(Error::Unwritable {
            element: Element::FieldValue,
            offset: 0,
            excerpt: v.to_string(),
            problem: "InfluxDB stores no NaN or infinite floats",
        });
    }
    let mut out: FloatBuffer = [0; 40];
    buf.put(format_f64(v, &mut out));
    Ok(())
}

fn put_value<B: LineBuffer + ?Sized>(buf: &mut B, value: &FieldValue<'_>) -> Result<(), Error> {
    match value {
        FieldValue::F64(v) => put_f64(buf, *v)?,
        FieldValue::I64(v) => {
            buf.put(itoa::Buffer::new().format(*v).as_bytes());
            buf.put(b"i");
        }
        FieldValue::U64(v) => {
            buf.put(itoa::Buffer::new().format(*v).as_bytes());
            buf.put(b"u");
        }
        FieldValue::Bool(v) => buf.put(if *v { b"true" } else { b"false" }),
        FieldValue::String(s) => put_string(buf, s.chunks()),
    }
    Ok(())
}

/// InfluxDB refuses a point with two tags of the same key (`duplicate tags`).
fn duplicate_tag<K: Ord + Clone + ToString>(
    keys: impl Iterator<Item = K> + Clone,
    sorted: bool,
) -> Option<Error> {
    let duplicate = if sorted {
        let mut prev: Option<K> = None;
        keys.clone().find(|k| {
            let dup = prev.as_ref() == Some(k);
            prev = Some(k.clone());
            dup
        })
    } else {
        keys.clone()
            .enumerate()
            .find(|(i, k)| keys.clone().take(*i).any(|p| p == *k))
            .map(|(_, k)| k)
    };
    duplicate.map(|k| Error::Unwritable {
        element: Element::TagKey,
        offset: 0,
        excerpt: excerpt(&k.to_string()),
        problem: "InfluxDB refuses duplicate tag keys",
    })
}

/// Builds one line in a caller's buffer without allocating (up to eight tags are held
/// inline until the first field, so they can be sorted).
///
/// ```
/// use line_protocol::LineWriter;
///
/// let mut buf = Vec::new();
/// LineWriter::new(&mut buf)
///     .measurement("cpu")
///     .tag("host", "server 01")
///     .field_f64("usage", 12.0)
///     .field_i64("cores", 8)
///     .timestamp(1_700_000_000_000_000_000)
///     .finish()
///     .unwrap();
/// assert_eq!(buf, b"cpu,host=server\\ 01 usage=12,cores=8i 1700000000000000000\n");
/// ```
#[derive(Debug)]
pub struct LineWriter<'b, B: LineBuffer + ?Sized> {
    buf: &'b mut B,
    options: WriteOptions,
}

impl<'b, B: LineBuffer + ?Sized> LineWriter<'b, B> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'b mut B) -> Self {
        LineWriter {
            buf,
            options: WriteOptions::default(),
        }
    }

    /// A writer with options (e.g. sorted tags).
    pub fn with_options(buf: &'b mut B, options: WriteOptions) -> Self {
        LineWriter { buf, options }
    }

    /// Starts the line with its measurement.
    pub fn measurement<'v>(self, name: &'v str) -> TagWriter<'b, 'v, B> {
        let start = self.buf.len();
        let mut state = State {
            buf: self.buf,
            start,
            error: None,
            fields: 0,
        };
        state.name_str(name, &MEASUREMENT, Element::Measurement);
        TagWriter {
            state,
            tags: SmallVec::new(),
            sort: self.options.sort_tags,
        }
    }
}

/// A field key as the builder (plain) or a parsed line (escaped) has it.
#[derive(Clone, Copy)]
enum FieldKey<'k, 'v> {
    Str(&'k str),
    Escaped(&'k EscapedStr<'v>),
}

/// What every writer stage carries: the buffer, where the line started, the first error.
#[derive(Debug)]
struct State<'b, B: LineBuffer + ?Sized> {
    buf: &'b mut B,
    start: usize,
    error: Option<Error>,
    fields: usize,
}

impl<B: LineBuffer + ?Sized> State<'_, B> {
    /// Writes a name given as one slice.
    #[inline]
    fn name_str(&mut self, s: &str, rules: &Rules, element: Element) {
        if self.error.is_some() {
            return;
        }
        if !self.check_leading(s, element) {
            return;
        }
        if let Err(Stop::Unwritable(e)) = put_name_str(self.buf, s, rules, element, false) {
            self.error = Some(e);
        }
    }

    /// Records an error when the first byte of `s` cannot start `element`.
    #[inline]
    fn check_leading(&mut self, s: &str, element: Element) -> bool {
        if let Some(problem) = self.leading_problem(element, s.as_bytes().first().copied()) {
            self.error = Some(Error::Unwritable {
                element,
                offset: 0,
                excerpt: excerpt(s),
                problem,
            });
            return false;
        }
        true
    }

    /// Writes a parsed name: one slice when nothing needs unescaping, else piecewise.
    #[inline]
    fn name_escaped(&mut self, s: &EscapedStr<'_>, rules: &Rules, element: Element) {
        if self.error.is_some() {
            return;
        }
        let before = self.buf.len();
        let raw = s.raw();
        if !self.check_leading(raw, element) {
            return;
        }
        match put_name_str(self.buf, raw, rules, element, true) {
            Ok(()) => {}
            Err(Stop::Unwritable(e)) => self.error = Some(e),
            Err(Stop::Backslash) => {
                self.buf.truncate(before);
                match s.unescaped_slice() {
                    Some(plain) => self.name_str(plain, rules, element),
                    None => self.name(s.chunks(), rules, element),
                }
            }
        }
    }

    /// What is wrong with a name's first byte where it starts a line or the field set.
    #[inline]
    fn leading_problem(&self, element: Element, first: Option<u8>) -> Option<&'static str> {
        match (element, first) {
            (Element::Measurement, Some(b'#')) => Some("a line starting with '#' is a comment"),
            (Element::Measurement, Some(b'\t' | 0)) => {
                Some("InfluxDB skips a leading tab or NUL here")
            }
            (Element::FieldKey, Some(b'\t' | 0)) if self.fields == 0 => {
                Some("InfluxDB skips a leading tab or NUL here")
            }
            _ => None,
        }
    }

    fn name<'c>(
        &mut self,
        chunks: impl Iterator<Item = &'c str> + Clone,
        rules: &Rules,
        element: Element,
    ) {
        if self.error.is_some() {
            return;
        }
        let first = chunks.clone().flat_map(str::bytes).next();
        if let Some(problem) = self.leading_problem(element, first) {
            self.error = Some(Error::Unwritable {
                element,
                offset: 0,
                excerpt: excerpt(&chunks.collect::<String>()),
                problem,
            });
            return;
        }
        if let Err(e) = put_name(self.buf, chunks, rules, element) {
            self.error = Some(e);
        }
    }

    /// Writes `,key=value` (or ` key=value` for the first field).
    #[inline]
    fn field(&mut self, key: FieldKey<'_, '_>, value: &FieldValue<'_>) {
        if self.error.is_some() {
            return;
        }
        self.buf.put(if self.fields == 0 { b" " } else { b"," });
        match key {
            FieldKey::Str(k) => self.name_str(k, &FIELD_KEY, Element::FieldKey),
            FieldKey::Escaped(k) => self.name_escaped(k, &FIELD_KEY, Element::FieldKey),
        }
        self.fields += 1;
        if self.error.is_some() {
            return;
        }
        self.buf.put(b"=");
        if let Err(e) = put_value(self.buf, value) {
            self.error = Some(e);
        }
    }

    fn finish(mut self, timestamp: Option<i64>) -> Result<usize, Error> {
        if self.error.is_none() && self.fields == 0 {
            self.error = Some(Error::Unwritable {
                element: Element::Point,
                offset: 0,
                excerpt: String::new(),
                problem: "a point needs at least one field",
            });
        }
        if let Some(e) = self.error.take() {
            self.buf.truncate(self.start);
            return Err(e);
        }
        if let Some(ts) = timestamp {
            self.buf.put(b" ");
            self.buf.put(itoa::Buffer::new().format(ts).as_bytes());
        }
        self.buf.put(b"\n");
        Ok(self.buf.len() - self.start)
    }
}

/// The tag stage of [`LineWriter`]: tags, then the first field.
#[derive(Debug)]
pub struct TagWriter<'b, 'v, B: LineBuffer + ?Sized> {
    state: State<'b, B>,
    tags: SmallVec<[(&'v str, &'v str); 8]>,
    sort: bool,
}

impl<'b, 'v, B: LineBuffer + ?Sized> TagWriter<'b, 'v, B> {
    /// Adds a tag. A tag with an empty value is left out: InfluxDB has no such thing as an
    /// empty tag value (its own encoder drops them too).
    pub fn tag(mut self, key: &'v str, value: &'v str) -> Self {
        if !value.is_empty() {
            self.tags.push((key, value));
        }
        self
    }

    fn into_fields(self) -> FieldWriter<'b, B> {
        let TagWriter {
            mut state,
            mut tags,
            sort,
        } = self;
        if sort {
            tags.sort_by(|a, b| a.0.cmp(b.0));
        }
        if state.error.is_none() && tags.len() > 1 {
            state.error = duplicate_tag(tags.iter().map(|t| t.0), sort);
        }
        for &(k, v) in &tags {
            if state.error.is_some() {
                break;
            }
            state.buf.put(b",");
            state.name_str(k, &TAG, Element::TagKey);
            if state.error.is_none() {
                state.buf.put(b"=");
                state.name_str(v, &TAG, Element::TagValue);
            }
        }
        FieldWriter {
            state,
            timestamp: None,
        }
    }

    /// Adds the first field, of any type.
    pub fn field(self, key: &str, value: FieldValue<'_>) -> FieldWriter<'b, B> {
        self.into_fields().field(key, value)
    }
    /// Adds the first field, a float.
    pub fn field_f64(self, key: &str, value: f64) -> FieldWriter<'b, B> {
        self.field(key, FieldValue::F64(value))
    }
    /// Adds the first field, an integer (`12i`).
    pub fn field_i64(self, key: &str, value: i64) -> FieldWriter<'b, B> {
        self.field(key, FieldValue::I64(value))
    }
    /// Adds the first field, an unsigned integer (`12u`).
    pub fn field_u64(self, key: &str, value: u64) -> FieldWriter<'b, B> {
        self.field(key, FieldValue::U64(value))
    }
    /// Adds the first field, a boolean.
    pub fn field_bool(self, key: &str, value: bool) -> FieldWriter<'b, B> {
        self.field(key, FieldValue::Bool(value))
    }
    /// Adds the first field, a string.
    pub fn field_str(self, key: &str, value: &str) -> FieldWriter<'b, B> {
        self.field(key, FieldValue::String(value.into()))
    }
}

/// The field stage of [`LineWriter`]: more fields, a timestamp, then [`FieldWriter::finish`].
#[derive(Debug)]
pub struct FieldWriter<'b, B: LineBuffer + ?Sized> {
    state: State<'b, B>,
    timestamp: Option<i64>,
}

impl<'b, B: LineBuffer + ?Sized> FieldWriter<'b, B> {
    /// Adds a field of any type.
    pub fn field(mut self, key: &str, value: FieldValue<'_>) -> Self {
        self.state.field(FieldKey::Str(key), &value);
        self
    }
    /// Adds a float field.
    pub fn field_f64(self, key: &str, value: f64) -> Self {
        self.field(key, FieldValue::F64(value))
    }
    /// Adds an integer field (`12i`).
    pub fn field_i64(self, key: &str, value: i64) -> Self {
        self.field(key, FieldValue::I64(value))
    }
    /// Adds an unsigned integer field (`12u`).
    pub fn field_u64(self, key: &str, value: u64) -> Self {
        self.field(key, FieldValue::U64(value))
    }
    /// Adds a boolean field.
    pub fn field_bool(self, key: &str, value: bool) -> Self {
        self.field(key, FieldValue::Bool(value))
    }
    /// Adds a string field.
    pub fn field_str(self, key: &str, value: &str) -> Self {
        self.field(key, FieldValue::String(value.into()))
    }
    /// Sets the timestamp (in whatever precision the request will declare).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
    /// Sets or clears the timestamp.
    pub fn maybe_timestamp(mut self, timestamp: Option<i64>) -> Self {
        self.timestamp = timestamp;
        self
    }
    /// Ends the line with `\n` and returns its length; on error the buffer is left as it was
    /// before the line.
    pub fn finish(self) -> Result<usize, Error> {
        self.state.finish(self.timestamp)
    }
}

/// Writes a parsed (or hand-built) point as canonical line protocol, ending in `\n`, and
/// returns the number of bytes written. Names and strings are unescaped and escaped again
/// piecewise, so nothing is allocated. On error the buffer is left as it was.
pub fn write_line<B: LineBuffer + ?Sized>(
    buf: &mut B,
    line: &ParsedLine<'_>,
    options: &WriteOptions,
) -> Result<usize, Error> {
    let start = buf.len();
    let mut state = State {
        buf,
        start,
        error: None,
        fields: 0,
    };
    state.name_escaped(&line.measurement, &MEASUREMENT, Element::Measurement);
    let tags = &line.tags;
    let mut order: SmallVec<[u16; 8]> = SmallVec::new();
    let sort = options.sort_tags && tags.len() > 1;
    if sort {
        order.extend((0..tags.len()).map(|i| i as u16));
        order.sort_by(|&a, &b| tags[usize::from(a)].0.cmp(&tags[usize::from(b)].0));
    }
    let nth = |i: usize| &tags[if sort { usize::from(order[i]) } else { i }];
    if state.error.is_none() && tags.len() > 1 {
        let keys = (0..tags.len()).map(nth).filter(|t| !t.1.is_empty());
        state.error = duplicate_tag(keys.map(|t| &t.0), sort);
    }
    for i in 0..tags.len() {
        let (k, v) = nth(i);
        if state.error.is_some() {
            break;
        }
        if v.is_empty() {
            continue;
        }
        state.buf.put(b",");
        state.name_escaped(k, &TAG, Element::TagKey);
        if state.error.is_none() {
            state.buf.put(b"=");
            state.name_escaped(v, &TAG, Element::TagValue);
        }
    }
    for (k, v) in &line.fields {
        state.field(FieldKey::Escaped(k), v);
    }
    state.finish(line.timestamp)
}

impl ParsedLine<'_> {
    /// [`write_line`] into `buf`.
    pub fn write_to<B: LineBuffer + ?Sized>(
        &self,
        buf: &mut B,
        options: &WriteOptions,
    ) -> Result<usize, Error> {
        write_line(buf, self, options)
    }

    /// The canonical line, without the trailing newline.
    pub fn to_line_protocol(&self) -> Result<String, Error> {
        let mut buf = Vec::with_capacity(self.line().len() + 16);
        write_line(&mut buf, self, &WriteOptions::default())?;
        buf.pop();
        // The writer only copies UTF-8 input and ASCII, so this cannot fail.
        Ok(String::from_utf8(buf).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_line;

    fn one(f: impl FnOnce(&mut Vec<u8>) -> Result<usize, Error>) -> Result<String, Error> {
        let mut buf = b"keep\n".to_vec();
        match f(&mut buf) {
            Ok(n) => {
                assert_eq!(n, buf.len() - 5);
                Ok(String::from_utf8(buf[5..].to_vec()).unwrap())
            }
            Err(e) => {
                assert_eq!(buf, b"keep\n", "rolled back");
                Err(e)
            }
        }
    }

    #[test]
    fn escapes_per_element() {
        let s = one(|b| {
            LineWriter::new(b)
                .measurement("m x,y=z\"")
                .tag("k =,", "v =,\"")
                .field_str("f =,\"", "s \"q\" \\ ,=")
                .finish()
        })
        .unwrap();
        assert_eq!(
            s,
            "m\\ x\\,y=z\",k\\ \\=\\,=v\\ \\=\\,\" f\\ \\=\\,\"=\"s \\\"q\\\" \\\\ ,=\"\n"
        );
    }

    #[test]
    fn floats_read_back_as_floats() {
        let s = one(|b| {
            LineWriter::new(b)
                .measurement("m")
                .field_f64("a", 1.0)
                .field_f64("b", -0.0)
                .field_f64("c", 1e300)
                .field_f64("d", 0.1)
                .field_f64("e", 1.5e-7)
                .finish()
        })
        .unwrap();
        assert_eq!(s, "m a=1,b=-0,c=1e300,d=0.1,e=1.5e-7\n");
    }

    #[test]
    fn sorted_tags_and_empty_values() {
        let s = one(|b| {
            LineWriter::with_options(b, WriteOptions { sort_tags: true })
                .measurement("m")
                .tag("z", "1")
                .tag("a", "")
                .tag("b", "2")
                .field_bool("f", true)
                .timestamp(-5)
                .finish()
        })
        .unwrap();
        assert_eq!(s, "m,b=2,z=1 f=true -5\n");
    }

    #[test]
    fn unwritable_values_roll_back() {
        for (f, msg) in [
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("a\\").field_i64("f", 1).finish())
                    as Box<dyn Fn(&mut Vec<u8>) -> Result<usize, Error>>,
                "cannot write measurement \"a\\\\\": a trailing backslash would escape the separator after it",
            ),
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("#m").field_i64("f", 1).finish()),
                "cannot write measurement \"#m\": a line starting with '#' is a comment",
            ),
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("m").tag("k", "a\\,b").field_i64("f", 1).finish()),
                "cannot write tag value \"a\\\\,b\": a backslash before this character is read back as an escape",
            ),
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("m").field_f64("f", f64::NAN).finish()),
                "cannot write field value \"NaN\": InfluxDB stores no NaN or infinite floats",
            ),
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("m").tag("k", "v").finish_without_fields()),
                "cannot write point \"\": a point needs at least one field",
            ),
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("m").field_i64("a\nb", 1).finish()),
                "cannot write field key \"a\\nb\": a newline ends the point",
            ),
            (
                Box::new(|b: &mut Vec<u8>| LineWriter::new(b).measurement("").field_i64("f", 1).finish()),
                "cannot write measurement \"\": it is empty",
            ),
        ] {
            assert_eq!(one(f).unwrap_err().to_string(), msg);
        }
    }

    impl<'b, B: LineBuffer + ?Sized> TagWriter<'b, '_, B> {
        fn finish_without_fields(self) -> Result<usize, Error> {
            self.into_fields().finish()
        }
    }

    #[test]
    fn reserialises_parsed_lines() {
        let p = parse_line(r#"m\ x,b=2,a=1\,x f\=k="a\"b\\",g=1i,h=2.50,i=T 17"#).unwrap();
        let s = one(|b| write_line(b, &p, &WriteOptions { sort_tags: true })).unwrap();
        assert_eq!(
            s,
            "m\\ x,a=1\\,x,b=2 f\\=k=\"a\\\"b\\\\\",g=1i,h=2.5,i=true 17\n"
        );
        let mut q = p.clone();
        q.tags.swap(0, 1);
        assert_eq!(parse_line(&s).unwrap(), q);
    }
}
