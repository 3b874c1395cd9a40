//! `urllib.parse.quote` / `unquote` with exactly Python's edge cases, on `percent-encoding`.
//!
//! The GraphiteEncoder quotes the IDNA (or punycode) output, which is always ASCII, with the
//! default `safe='/'`, then replaces `.` by `%2E` because `.` separates Graphite path
//! components. Both steps collapse into one `AsciiSet`, [`SEGMENT`]: a byte is kept when
//! `quote` keeps it and it is not `.`.
//!
//! Decoding is `percent_decode` per maximal ASCII run, as Python's `unquote` splits its
//! input. What stays hand-written is what the crate does not offer: [`is_kept`], the
//! encoder's all-safe fast path as branch-free arithmetic (the crate's set membership is
//! private; tests check it against [`SEGMENT`] on every byte), and [`unquote_offsets`], the
//! input offset of every decoded byte, which an error message needs and the crate does not
//! report.

use std::borrow::Cow;

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What `quote(s, safe='/')` followed by `.replace('.', '%2E')` encodes: every byte but
/// `A-Z a-z 0-9 _ - ~ /` (non-ASCII bytes always are).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// Bytes that come out of the encoder unchanged: `quote`'s always-safe set
/// (`A-Z a-z 0-9 _ . - ~`) plus its default `safe='/'`, minus `.`.
#[cfg(test)]
pub(crate) static KEEP: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'~' | b'/');
        b += 1;
    }
    t
};

/// [`KEEP`] as arithmetic, for loops the compiler can vectorize.
#[inline]
pub(crate) fn is_kept(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'_')
        | (b == b'-')
        | (b == b'~')
        | (b == b'/')
}

/// Appends `quote(s.encode()).replace('.', '%2E')`.
///
/// (Callers pass ASCII; a non-ASCII character comes out as its percent-encoded UTF-8 bytes,
/// as `quote` does.)
pub(crate) fn quote_into(s: &str, out: &mut String) {
    out.extend(utf8_percent_encode(s, SEGMENT));
}

/// For each byte `percent_decode(run)` yields, its offset in the input (`run` starts at
/// `base`): `%` and two hex digits make one byte, anything else is itself (the crate's rule,
/// and Python's).
fn source_offsets(run: &[u8], base: usize, out: &mut Vec<usize>) {
    let mut j = 0;
    while j < run.len() {
        out.push(base + j);
        let escape = run[j] == b'%'
            && j + 2 < run.len()
            && run[j + 1].is_ascii_hexdigit()
            && run[j + 2].is_ascii_hexdigit();
        j += if escape { 3 } else { 1 };
    }
}

/// `urllib.parse.unquote(s)` (UTF-8, `errors='replace'`).
///
/// Python percent-decodes each maximal run of ASCII characters on its own and decodes that
/// run's bytes as UTF-8 with replacement, leaving non-ASCII characters as they are: so a
/// multi-byte sequence split by a literal non-ASCII character becomes replacement
/// characters, and a `%` not followed by two hex digits stays a literal `%`.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().contains(&b'%') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(unquote_impl(s, None))
}

/// For each byte of `unquote(s)`, the offset in `s` it came from. Only computed when an
/// error needs to point back into the caller's (percent-encoded) input.
pub(crate) fn unquote_offsets(s: &str) -> Vec<usize> {
    let mut map = Vec::with_capacity(s.len());
    unquote_impl(s, Some(&mut map));
    map
}

fn unquote_impl(s: &str, mut map: Option<&mut Vec<usize>>) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut raw: Vec<u8> = Vec::new();
    let mut raw_at: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii() {
            i += 1;
        }
        if i > start {
            let run = &bytes[start..i];
            raw.clear();
            raw.extend(percent_decode(run));
            if map.is_some() {
                raw_at.clear();
                source_offsets(run, start, &mut raw_at);
                debug_assert_eq!(raw_at.len(), raw.len());
            }
            let mut k = 0;
            for chunk in raw.utf8_chunks() {
                let valid = chunk.valid();
                out.push_str(valid);
                if let Some(m) = map.as_deref_mut() {
                    m.extend_from_slice(&raw_at[k..k + valid.len()]);
                }
                k += valid.len();
                if !chunk.invalid().is_empty() {
                    out.push(char::REPLACEMENT_CHARACTER);
                    if let Some(m) = map.as_deref_mut() {
                        m.extend(std::iter::repeat_n(raw_at[k], 3));
                    }
                    k += chunk.invalid().len();
                }
            }
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii() {
            i += 1;
        }
        out.push_str(&s[start..i]);
        if let Some(m) = map.as_deref_mut() {
            m.extend(start..i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(s: &str) -> String {
        let mut out = String::new();
        quote_into(s, &mut out);
        out
    }

    #[test]
    fn arithmetic_and_table_agree() {
        for b in 0..=255u8 {
            assert_eq!(is_kept(b), KEEP[usize::from(b)], "{b:#x}");
        }
    }

    #[test]
    fn the_fast_path_table_is_the_crate_set() {
        for b in 0..=255u8 {
            let encoded = percent_encoding::percent_encode(&[b], SEGMENT).to_string();
            assert_eq!(encoded.len() == 1, KEEP[usize::from(b)], "{b:#x}");
        }
    }

    #[test]
    fn quote_matches_python_safe_set() {
        assert_eq!(quote("a.b"), "a%2Eb");
        assert_eq!(quote("A-z_0~9/x"), "A-z_0~9/x");
        assert_eq!(quote("a b%c"), "a%20b%25c");
        assert_eq!(quote("\x00\x7f\u{e9}"), "%00%7F%C3%A9");
        assert_eq!(quote(""), "");
    }

    #[test]
    fn unquote_edge_cases() {
        assert_eq!(unquote("plain"), "plain");
        assert!(matches!(unquote("plain"), Cow::Borrowed(_)));
        assert_eq!(unquote("a%2Eb"), "a.b");
        assert_eq!(unquote("%%41"), "%A");
        assert_eq!(unquote("%4"), "%4");
        assert_eq!(unquote("%"), "%");
        assert_eq!(unquote("%zz%41%4a"), "%zzAJ");
        assert_eq!(unquote("%C3%BC"), "\u{fc}");
        assert_eq!(unquote("%C3"), "\u{fffd}");
        assert_eq!(unquote("%C3\u{fc}%BC"), "\u{fffd}\u{fc}\u{fffd}");
        assert_eq!(unquote("%F0%80%80"), "\u{fffd}\u{fffd}\u{fffd}");
        // A percent sign right before a non-ASCII character does not reach across it.
        assert_eq!(unquote("%\u{fc}41"), "%\u{fc}41");
    }

    #[test]
    fn offsets_point_back_into_the_input() {
        let s = "a%2Eb\u{fc}%C3x";
        let decoded = unquote(s);
        let map = unquote_offsets(s);
        assert_eq!(map.len(), decoded.len());
        assert_eq!(decoded, "a.b\u{fc}\u{fffd}x");
        assert_eq!(map, vec![0, 1, 4, 5, 6, 7, 7, 7, 10]);
    }
}
