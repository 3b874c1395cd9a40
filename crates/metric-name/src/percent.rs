//! `urllib.parse.quote` / `unquote` with exactly Python's edge cases.
//!
//! The GraphiteEncoder quotes the IDNA (or punycode) output, which is always ASCII, with the
//! default `safe='/'`, then replaces `.` by `%2E` because `.` separates Graphite path
//! components. Both steps collapse into one table: a byte is kept when `quote` keeps it and
//! it is not `.`.

use std::borrow::Cow;

/// Bytes that come out of the encoder unchanged: `quote`'s always-safe set
/// (`A-Z a-z 0-9 _ . - ~`) plus its default `safe='/'`, minus `.`.
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

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `quote(s.encode()).replace('.', '%2E')`.
///
/// Runs of kept bytes are copied in one go: relay traffic is mostly letters and digits.
/// (Callers pass ASCII; a non-ASCII character would come out as its percent-encoded UTF-8
/// bytes, as `quote` does.)
pub(crate) fn quote_into(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && KEEP[usize::from(bytes[i])] {
            i += 1;
        }
        if i > start {
            // Both ends sit next to ASCII bytes, hence on character boundaries.
            out.push_str(&s[start..i]);
        }
        if i < bytes.len() {
            let b = bytes[i];
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
            i += 1;
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
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
            raw.clear();
            raw_at.clear();
            let mut j = start;
            while j < i {
                let b = bytes[j];
                if b == b'%' && j + 2 < i {
                    if let (Some(hi), Some(lo)) = (hex_value(bytes[j + 1]), hex_value(bytes[j + 2]))
                    {
                        raw.push(hi << 4 | lo);
                        raw_at.push(j);
                        j += 3;
                        continue;
                    }
                }
                raw.push(b);
                raw_at.push(j);
                j += 1;
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
