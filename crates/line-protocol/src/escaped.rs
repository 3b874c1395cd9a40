//! Names and string values as they appear in the input, unescaped on demand.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Which backslash sequences InfluxDB 1.x resolves in a given element.
///
/// InfluxDB does not use one rule everywhere: measurement names and field keys go through
/// `escape.Unescape` (`\,` `\"` `\ ` `\=`), tag keys and values through `unescapeTag` (`\,` `\ `
/// `\=`, so `\"` stays as typed), and string field values through `unescapeStringField`
/// (`\\` and `\"`). Any other backslash, including `\\` outside strings, is kept literally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escaping {
    /// Text that is already a plain value.
    Plain,
    /// Measurement names and field keys.
    Name,
    /// Tag keys and tag values.
    Tag,
    /// The inside of a double-quoted string field value.
    String,
}

impl Escaping {
    /// Whether `\` followed by `b` is resolved to `b`.
    #[inline]
    fn resolves(self, b: u8) -> bool {
        match self {
            Escaping::Plain => false,
            Escaping::Name => matches!(b, b',' | b'"' | b' ' | b'='),
            Escaping::Tag => matches!(b, b',' | b' ' | b'='),
            Escaping::String => matches!(b, b'\\' | b'"'),
        }
    }
}

/// A measurement, tag key, tag value, field key or string field value, borrowed from the input.
///
/// It keeps the text exactly as it was written and unescapes only when asked, so a line
/// without escapes is parsed without touching the heap; [`EscapedStr::as_str`] allocates only
/// when an escape sequence actually changes the text. Equality, ordering and hashing are on the
/// unescaped value.
#[derive(Clone, Copy)]
pub struct EscapedStr<'a> {
    raw: &'a str,
    escaping: Escaping,
}

impl<'a> EscapedStr<'a> {
    pub(crate) const fn new(raw: &'a str, escaping: Escaping) -> Self {
        EscapedStr { raw, escaping }
    }

    /// A value that needs no unescaping, e.g. to build a [`crate::ParsedLine`] by hand.
    pub const fn plain(value: &'a str) -> Self {
        EscapedStr::new(value, Escaping::Plain)
    }

    /// The text exactly as it appeared in the input (for string fields: between the quotes).
    pub const fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the input used escape sequences that change the value, i.e. whether
    /// [`EscapedStr::as_str`] has to allocate.
    pub fn is_escaped(&self) -> bool {
        self.first_escape().is_some()
    }

    /// The unescaped value; borrowed unless escape sequences had to be resolved.
    pub fn as_str(&self) -> Cow<'a, str> {
        match self.first_escape() {
            None => Cow::Borrowed(self.raw),
            Some(_) => {
                let mut out = String::with_capacity(self.raw.len());
                for chunk in self.chunks() {
                    out.push_str(chunk);
                }
                Cow::Owned(out)
            }
        }
    }

    /// The value as one slice of the input when no escape sequence changes it.
    #[inline]
    pub(crate) fn unescaped_slice(&self) -> Option<&'a str> {
        match self.first_escape() {
            None => Some(self.raw),
            Some(_) => None,
        }
    }

    /// The unescaped value as an owned `String`.
    pub fn into_string(self) -> String {
        self.as_str().into_owned()
    }

    /// Length of the unescaped value in bytes, without allocating.
    pub fn len(&self) -> usize {
        self.chunks().map(str::len).sum()
    }

    /// Whether the unescaped value is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The unescaped value as consecutive slices of the input (no allocation).
    pub fn chunks(&self) -> Chunks<'a> {
        Chunks {
            rest: self.raw,
            escaping: self.escaping,
            next_escape: self.first_escape(),
        }
    }

    /// Position of the first backslash that an unescape would remove.
    #[inline]
    fn first_escape(&self) -> Option<usize> {
        if self.escaping == Escaping::Plain {
            return None;
        }
        first_escape(self.raw.as_bytes(), self.escaping)
    }
}

/// Position of the first backslash in `bytes` that `escaping` resolves.
#[inline]
fn first_escape(bytes: &[u8], escaping: Escaping) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = find_backslash(&bytes[from..]) {
        let i = from + p;
        match bytes.get(i + 1) {
            Some(&b) if escaping.resolves(b) => return Some(i),
            // `\\` in a string value resolves; elsewhere the second backslash may start an
            // escape of its own, so look at it next.
            Some(_) => from = i + 1,
            None => return None,
        }
    }
    None
}

/// Names are short: a plain loop beats setting up a vector search below 16 bytes.
#[inline]
fn find_backslash(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 16 {
        bytes.iter().position(|&b| b == b'\\')
    } else {
        memchr::memchr(b'\\', bytes)
    }
}

/// The pieces of an [`EscapedStr`]'s unescaped value, in order.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    rest: &'a str,
    escaping: Escaping,
    /// Where in `rest` the next resolved escape is; `None` when there is none left.
    next_escape: Option<usize>,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        match self.next_escape {
            None => {
                let all = self.rest;
                self.rest = "";
                Some(all)
            }
            Some(0) => {
                // The escaped byte (ASCII) alone, then find the next escape.
                let (escaped, tail) = self.rest[1..].split_at(1);
                self.rest = tail;
                self.next_escape = first_escape(tail.as_bytes(), self.escaping);
                Some(escaped)
            }
            Some(i) => {
                // The text before the escape; the escape comes next time.
                let (head, tail) = self.rest.split_at(i);
                self.rest = tail;
                self.next_escape = Some(0);
                Some(head)
            }
        }
    }
}

impl fmt::Display for EscapedStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.chunks() {
            f.write_str(chunk)?;
        }
        Ok(())
    }
}

impl fmt::Debug for EscapedStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.as_str(), f)
    }
}

impl<'b> PartialEq<EscapedStr<'b>> for EscapedStr<'_> {
    fn eq(&self, other: &EscapedStr<'b>) -> bool {
        if self.escaping == other.escaping && self.raw == other.raw {
            return true;
        }
        if !self.is_escaped() && !other.is_escaped() {
            return self.raw == other.raw;
        }
        *self == *other.as_str()
    }
}

impl Eq for EscapedStr<'_> {}

impl PartialOrd for EscapedStr<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EscapedStr<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        if !self.is_escaped() && !other.is_escaped() {
            return self.raw.cmp(other.raw);
        }
        self.as_str().cmp(&other.as_str())
    }
}

impl Hash for EscapedStr<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for EscapedStr<'_> {
    fn eq(&self, other: &str) -> bool {
        let mut rest = other.as_bytes();
        for chunk in self.chunks() {
            match rest.strip_prefix(chunk.as_bytes()) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

impl PartialEq<&str> for EscapedStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for EscapedStr<'_> {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<EscapedStr<'_>> for &str {
    fn eq(&self, other: &EscapedStr<'_>) -> bool {
        *other == **self
    }
}

impl PartialEq<EscapedStr<'_>> for str {
    fn eq(&self, other: &EscapedStr<'_>) -> bool {
        *other == *self
    }
}

impl<'a> From<&'a str> for EscapedStr<'a> {
    fn from(value: &'a str) -> Self {
        EscapedStr::plain(value)
    }
}

impl From<EscapedStr<'_>> for String {
    fn from(value: EscapedStr<'_>) -> Self {
        value.into_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(raw: &str, e: Escaping) -> String {
        EscapedStr::new(raw, e).as_str().into_owned()
    }

    #[test]
    fn names_resolve_comma_quote_space_equals() {
        // influxd 1.6.7 stores `m\=x\ y\,z\\w\q` as measurement `m=x y,z\\w\q`.
        assert_eq!(un(r"m\=x\ y\,z\\w\q", Escaping::Name), r"m=x y,z\\w\q");
        assert_eq!(un(r#"m\"x"#, Escaping::Name), r#"m"x"#);
        // A backslash before an escape: the first stays, the second escapes.
        assert_eq!(un(r"a\\,b", Escaping::Name), r"a\,b");
        assert_eq!(un(r"a\\\,b", Escaping::Name), r"a\\,b");
        assert_eq!(un(r"trailing\", Escaping::Name), r"trailing\");
    }

    #[test]
    fn tags_keep_escaped_quotes() {
        assert_eq!(un(r#"v\"a\q\\x"#, Escaping::Tag), r#"v\"a\q\\x"#);
        assert_eq!(un(r"v\,a\ b\=c", Escaping::Tag), "v,a b=c");
    }

    #[test]
    fn strings_resolve_backslash_and_quote() {
        assert_eq!(un(r#"a\\\""#, Escaping::String), r#"a\""#);
        assert_eq!(un(r"\\\\", Escaping::String), r"\\");
        assert_eq!(un(r"a\q\n", Escaping::String), r"a\q\n");
        assert_eq!(un(r#"\"\"x"#, Escaping::String), r#"""x"#);
    }

    #[test]
    fn borrows_unless_needed() {
        assert!(matches!(
            EscapedStr::new(r"a\qb", Escaping::Tag).as_str(),
            Cow::Borrowed(_)
        ));
        assert!(!EscapedStr::new(r"a\qb", Escaping::Tag).is_escaped());
        assert!(EscapedStr::new(r"a\ b", Escaping::Tag).is_escaped());
        assert!(matches!(
            EscapedStr::new(r"a\ b", Escaping::Tag).as_str(),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn equality_without_allocation() {
        let e = EscapedStr::new(r"a\ b\,c", Escaping::Tag);
        assert_eq!(e, "a b,c");
        assert_ne!(e, "a b,");
        assert_ne!(e, "a b,cd");
        assert_eq!(e.len(), 5);
        assert_eq!(e, EscapedStr::plain("a b,c"));
        assert_eq!("a b,c", e);
        // Equal values in different escapings.
        assert_eq!(
            EscapedStr::new("x y", Escaping::String),
            EscapedStr::plain("x y")
        );
        assert_eq!(
            EscapedStr::new(r"a\,", Escaping::Tag),
            EscapedStr::new(r"a\,", Escaping::Name)
        );
        assert_ne!(
            EscapedStr::new(r"a\=", Escaping::Name),
            EscapedStr::plain(r"a\=")
        );
    }
}
