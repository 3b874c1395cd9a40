//! Graphite tagged series: `name;key=value;key2=value2`.
//!
//! The rules are carbon's `TaggedSeries.parse_carbon` and `TaggedSeries.format`
//! (graphite-project/carbon `lib/carbon/util.py`), because a relay that hashes tagged series
//! must compute byte-identical normalized names or data lands on the wrong carbon-cache:
//!
//! - the path splits on `;`; the first part is the name, which must be non-empty;
//! - every other part splits on its first `=`; the key must be non-empty and free of `!` and `^`
//!   (`;` and `=` cannot occur by construction), the value non-empty and not start with `~`;
//! - a later duplicate key replaces an earlier one (carbon fills a dict);
//! - the name also becomes the `name` tag with leading `~` removed, which must leave something;
//!   a `name` tag in the input is overwritten by it and never printed;
//! - the normalized form is that name followed by `;key=value` for each tag, sorted as the
//!   strings `";key=value"` sort, i.e. by key with `=` as terminator (`a.b` sorts before `a`
//!   because `.` < `=`), which is not plain key order.
//!
//! carbon applies the same normalization to untagged paths (so `~foo` becomes `foo`);
//! [`TaggedPath`] does too. OpenMetrics-style `name{k="v"}` paths are not interpreted.

use std::cmp::Ordering;

use smallvec::SmallVec;

use crate::error::{Error, Excerpt, Position};

/// A validated metric path, possibly tagged, borrowing from the input. Parsing checks every
/// rule without allocating; normalizing allocates only for paths with more than 16 tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaggedPath<'a> {
    path: &'a str,
    /// Length of the name (the offset of the first `;`, or the whole path).
    name_len: usize,
}

/// One `key=value` pair of a tagged path, as written (not deduplicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The key.
    pub key: &'a str,
    /// The value.
    pub value: &'a str,
}

impl<'a> TaggedPath<'a> {
    /// Validates `path` by carbon's rules. Error columns are 1-based offsets into `path`.
    ///
    /// ```
    /// use graphite_plaintext::TaggedPath;
    /// let p = TaggedPath::parse("cpu.load;host=a;dc=x").unwrap();
    /// assert_eq!(p.name(), "cpu.load");
    /// assert_eq!(p.to_normalized(), "cpu.load;dc=x;host=a");
    /// assert_eq!(
    ///     TaggedPath::parse("cpu;host").unwrap_err().to_string(),
    ///     "invalid tag \"host\" at column 5: expected \"key=value\""
    /// );
    /// ```
    pub fn parse(path: &'a str) -> Result<Self, Error> {
        let bytes = path.as_bytes();
        let name_len = memchr::memchr(b';', bytes).unwrap_or(bytes.len());
        if name_len == 0 {
            return Err(Error::EmptyName {
                excerpt: Excerpt::new(bytes),
                pos: Position::column(0),
            });
        }
        let parsed = TaggedPath { path, name_len };
        for segment in parsed.segments() {
            segment?;
        }
        if path[..name_len].bytes().all(|b| b == b'~') {
            return Err(Error::TildeName {
                excerpt: Excerpt::new(&bytes[..name_len]),
                pos: Position::column(0),
            });
        }
        Ok(parsed)
    }

    /// The whole path as given.
    pub fn as_str(&self) -> &'a str {
        self.path
    }

    /// The name part, as written.
    pub fn name(&self) -> &'a str {
        &self.path[..self.name_len]
    }

    /// The name as carbon's `name` tag and the normalized path use it: leading `~` removed.
    pub fn sanitized_name(&self) -> &'a str {
        self.name().trim_start_matches('~')
    }

    /// Whether the path carries tags at all.
    pub fn is_tagged(&self) -> bool {
        self.name_len < self.path.len()
    }

    /// The tags in written order, duplicates and any `name` tag included.
    pub fn tags(&self) -> impl Iterator<Item = Tag<'a>> + 'a {
        // Every segment was validated by `parse`, the only constructor.
        self.segments()
            .filter_map(|segment| segment.ok().map(|(_, tag)| tag))
    }

    /// Whether [`TaggedPath::to_normalized`] would return the path unchanged, so a caller can
    /// skip the copy. Allocation-free.
    pub fn is_normalized(&self) -> bool {
        if self.name().starts_with('~') {
            return false;
        }
        let mut previous: Option<&str> = None;
        for tag in self.tags() {
            if tag.key == "name" {
                return false;
            }
            if let Some(previous) = previous {
                if carbon_key_order(previous, tag.key) != Ordering::Less {
                    return false;
                }
            }
            previous = Some(tag.key);
        }
        true
    }

    /// Appends the normalized form (as carbon's `TaggedSeries.format`) to `out`, so a receiver
    /// can reuse one buffer for every line.
    pub fn write_normalized(&self, out: &mut String) {
        if self.is_normalized() {
            out.push_str(self.path);
            return;
        }
        out.push_str(self.sanitized_name());
        let mut tags: SmallVec<[(usize, Tag<'a>); 16]> = self.tags().enumerate().collect();
        // Unstable sort with the index as tie-break: deterministic, stable in effect, and
        // allocation-free, unlike the std stable sort on longer slices.
        tags.sort_unstable_by(|a, b| carbon_key_order(a.1.key, b.1.key).then(a.0.cmp(&b.0)));
        for (i, (_, tag)) in tags.iter().enumerate() {
            let superseded = tags.get(i + 1).is_some_and(|(_, next)| next.key == tag.key);
            if superseded || tag.key == "name" {
                continue;
            }
            out.push(';');
            out.push_str(tag.key);
            out.push('=');
            out.push_str(tag.value);
        }
    }

    /// The normalized form as a new `String`.
    pub fn to_normalized(&self) -> String {
        let mut out = String::with_capacity(self.path.len());
        self.write_normalized(&mut out);
        out
    }

    /// The tag segments with their validation results; the name was checked by the caller.
    fn segments(&self) -> impl Iterator<Item = Result<(usize, Tag<'a>), Error>> + 'a {
        let path = self.path;
        let mut offset = self.name_len;
        std::iter::from_fn(move || {
            if offset >= path.len() {
                return None;
            }
            let start = offset + 1;
            let end =
                memchr::memchr(b';', &path.as_bytes()[start..]).map_or(path.len(), |i| start + i);
            offset = end;
            Some(validate_tag(&path[start..end], start))
        })
    }
}

/// Checks one `key=value` segment that starts at byte `start` of the path.
fn validate_tag(segment: &str, start: usize) -> Result<(usize, Tag<'_>), Error> {
    let bytes = segment.as_bytes();
    let pos = Position::column(start);
    let Some(eq) = memchr::memchr(b'=', bytes) else {
        return Err(Error::TagWithoutValue {
            excerpt: Excerpt::new(bytes),
            pos,
        });
    };
    let (key, value) = (&segment[..eq], &segment[eq + 1..]);
    if key.is_empty() {
        return Err(Error::EmptyTagKey {
            excerpt: Excerpt::new(bytes),
            pos,
        });
    }
    if value.is_empty() {
        return Err(Error::EmptyTagValue {
            excerpt: Excerpt::new(bytes),
            pos,
        });
    }
    // carbon tests the characters in the order of `';!^='`; only `!` and `^` can occur here.
    for ch in ['!', '^'] {
        if key.contains(ch) {
            return Err(Error::TagKeyChar {
                ch,
                excerpt: Excerpt::new(bytes),
                pos,
            });
        }
    }
    if value.starts_with('~') {
        return Err(Error::TagValueTilde {
            excerpt: Excerpt::new(bytes),
            pos,
        });
    }
    Ok((start, Tag { key, value }))
}

/// The order of `";key=…"` strings for distinct keys: compare the keys as if each ended in `=`.
/// Byte order equals Python's code point order for UTF-8.
fn carbon_key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = a.len().min(b.len());
    match a[..common].cmp(&b[..common]) {
        Ordering::Equal => {
            let next_a = a.get(common).copied().unwrap_or(b'=');
            let next_b = b.get(common).copied().unwrap_or(b'=');
            next_a.cmp(&next_b)
        }
        unequal => unequal,
    }
}

/// Validates `path` and appends its normalized form to `out` (see [`TaggedPath`]).
pub fn normalize_into(path: &str, out: &mut String) -> Result<(), Error> {
    TaggedPath::parse(path)?.write_normalized(out);
    Ok(())
}

/// Validates `path` and returns its normalized form (see [`TaggedPath`]).
///
/// ```
/// assert_eq!(
///     graphite_plaintext::normalize("disk.used;path=/;host=b;host=a").unwrap(),
///     "disk.used;host=a;path=/"
/// );
/// ```
pub fn normalize(path: &str) -> Result<String, Error> {
    Ok(TaggedPath::parse(path)?.to_normalized())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_treats_end_of_key_as_equals_sign() {
        assert_eq!(carbon_key_order("a.b", "a"), Ordering::Less);
        assert_eq!(carbon_key_order("a", "a>"), Ordering::Less);
        assert_eq!(carbon_key_order("a", "b"), Ordering::Less);
        assert_eq!(carbon_key_order("ab", "ab"), Ordering::Equal);
    }
}
