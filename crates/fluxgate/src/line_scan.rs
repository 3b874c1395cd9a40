//! Where the fields of a canonical plaintext line end, told from byte masks made sixteen
//! bytes at a time.
//!
//! The relay's passing and translating ways ask of every line whether it goes on as it came
//! ([`crate::pipeline::Passthrough`]): `path value timestamp\n`, the path printable ASCII
//! without `;`, the value and timestamp spelled canonically. Asked byte by byte (or eight at
//! a time), that question was nearly all the instructions the forwarding relay spends on a
//! line. Here one pass of SSE2 compares (part of every x86-64 CPU, so no detection is
//! needed) gives, per byte of the line, whether it is a space, a newline, a digit or a byte a
//! path may not hold; the answer is then a few bit operations on those masks.
//!
//! [`fields`] decides exactly as the byte-wise check does, or says it cannot tell (fewer
//! than 64 bytes left, or no newline within them): the caller then asks the byte-wise check.
//! A property test holds the two to the same answers.
//!
//! [`name_and_end`] is the same idea for the hashing clusters, which need only where a
//! line's name and the line end.

/// The ends of a line's fields: the space after the path, the space after the value and the
/// newline.
pub(crate) type Ends = (usize, usize, usize);

/// Digits a canonical value may have (see [`graphite_plaintext::canonical_value_len`]).
const MAX_VALUE_DIGITS: usize = 15;

/// Per byte of the first 64 of a line (bit `i` for byte `i`).
#[derive(Debug, Default, Clone, Copy)]
struct Masks {
    space: u64,
    newline: u64,
    digit: u64,
    /// Not printable ASCII (`!` to `~`), or `;`: a byte no passing path holds.
    odd: u64,
}

/// The masks of the first 64 bytes of `w`, sixteen at a time, stopping after the sixteen
/// that hold a newline (the bytes after it are not looked at).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(w: &[u8; 64]) -> Masks {
    use safe_arch::{
        bitandnot_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i, sub_i8_m128i,
    };
    let splat = |b: u8| set_splat_i8_m128i(b as i8);
    let mut m = Masks::default();
    for i in 0..4 {
        let at = 16 * i;
        let v = load_unaligned_m128i(w[at..at + 16].try_into().expect("16 bytes"));
        let bits = |x| u64::from(move_mask_i8_m128i(x) as u16) << at;
        let newline = bits(cmp_eq_mask_i8_m128i(v, splat(b'\n')));
        m.space |= bits(cmp_eq_mask_i8_m128i(v, splat(b' ')));
        // `x - lo` as unsigned at most `hi - lo`: `x` in `lo..=hi`.
        let digits = sub_i8_m128i(v, splat(b'0'));
        m.digit |= bits(cmp_eq_mask_i8_m128i(min_u8_m128i(digits, splat(9)), digits));
        let from_bang = sub_i8_m128i(v, splat(b'!'));
        let graphic = cmp_eq_mask_i8_m128i(min_u8_m128i(from_bang, splat(b'~' - b'!')), from_bang);
        let semicolon = cmp_eq_mask_i8_m128i(v, splat(b';'));
        m.odd |= !bits(bitandnot_m128i(semicolon, graphic)) & (0xffff << at);
        m.newline |= newline;
        if newline != 0 {
            break;
        }
    }
    m
}

/// Elsewhere the masks are not made: every line goes to the byte-wise check.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn masks(_: &[u8; 64]) -> Masks {
    Masks::default()
}

/// For the line at the start of `input`: `Some(Some(ends))` when it is `path value
/// timestamp\n` at most `max_line` bytes long (without its `\n`), the path non-empty
/// printable ASCII without `;`, the value and the timestamp canonical and the timestamp at
/// most what nanoseconds hold; `Some(None)` when it is not; `None` when this cannot tell
/// (fewer than 64 bytes, or no newline among them).
#[inline(always)]
pub(crate) fn fields(input: &[u8], max_line: usize) -> Option<Option<Ends>> {
    let w: &[u8; 64] = input.get(..64)?.try_into().expect("64 bytes");
    let m = masks(w);
    if m.newline == 0 {
        return None;
    }
    Some(decide(w, &m, max_line))
}

#[inline(always)]
fn decide(w: &[u8; 64], m: &Masks, max_line: usize) -> Option<Ends> {
    let len = m.newline.trailing_zeros() as usize;
    if len > max_line {
        return None;
    }
    let before_newline = (1u64 << len) - 1;
    let spaces = m.space & before_newline;
    let sp1 = spaces.trailing_zeros() as usize;
    // No space (64), or the path is empty or holds an odd byte.
    if sp1 >= len || sp1 == 0 || m.odd & ((1u64 << sp1) - 1) != 0 {
        return None;
    }
    let later = spaces & (spaces - 1);
    let sp2 = later.trailing_zeros() as usize;
    if sp2 >= len {
        return None;
    }
    // The timestamp: 1 to 10 digits, no leading zero, at most 9223372036.
    let ts_len = len - sp2 - 1;
    let ts_bits = before_newline & !(((1u64 << sp2) << 1) - 1);
    if !(1..=10).contains(&ts_len)
        || m.digit & ts_bits != ts_bits
        || (ts_len > 1 && w[sp2 + 1] == b'0')
        || (ts_len == 10 && w[sp2 + 1] == b'9' && &w[sp2 + 1..len] > b"9223372036".as_slice())
    {
        return None;
    }
    // The value: `-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?`, at most 15 digits, not `-0`.
    let negative = w[sp1 + 1] == b'-';
    let start = sp1 + 1 + usize::from(negative);
    if start >= sp2 {
        return None;
    }
    let value_bits = ((1u64 << sp2) - 1) & !((1u64 << start) - 1);
    let others = value_bits & !m.digit;
    let (int_len, frac_len) = if others == 0 {
        (sp2 - start, 0)
    } else {
        let dot = others.trailing_zeros() as usize;
        if others & (others - 1) != 0 || w[dot] != b'.' {
            return None;
        }
        let frac_len = sp2 - dot - 1;
        if frac_len == 0 || w[sp2 - 1] == b'0' {
            return None;
        }
        (dot - start, frac_len)
    };
    if int_len == 0
        || (int_len > 1 && w[start] == b'0')
        || int_len + frac_len > MAX_VALUE_DIGITS
        || (negative && frac_len == 0 && w[start] == b'0')
    {
        return None;
    }
    Some((sp1, sp2, len))
}

/// For the line starting at `start` in `body`: where its name ends (its first space, or the
/// line's end when it has none) and where the line ends (past its `\n`, or the end of
/// `body`). A hashing cluster places each line by its name; the two ends come from one pass
/// of newline and space masks, sixteen bytes at a time, instead of a search for each.
#[inline]
pub(crate) fn name_and_end(body: &[u8], start: usize) -> (usize, usize) {
    let mut at = start;
    let mut name_end = None;
    #[cfg(target_arch = "x86_64")]
    {
        use safe_arch::{
            cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
        };
        while let Some(chunk) = body.get(at..at + 16) {
            let v = load_unaligned_m128i(chunk.try_into().expect("16 bytes"));
            let bits = |b: u8| {
                move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8))) as u32
                    & 0xffff
            };
            let newline = bits(b'\n');
            if name_end.is_none() {
                let before = if newline == 0 {
                    0xffff
                } else {
                    (1u32 << newline.trailing_zeros()) - 1
                };
                let spaces = bits(b' ') & before;
                if spaces != 0 {
                    name_end = Some(at + spaces.trailing_zeros() as usize);
                }
            }
            if newline != 0 {
                let end = at + newline.trailing_zeros() as usize + 1;
                return (name_end.unwrap_or(end), end);
            }
            at += 16;
        }
    }
    let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i + 1);
    let name_end =
        name_end.unwrap_or_else(|| memchr::memchr(b' ', &body[at..end]).map_or(end, |i| at + i));
    (name_end, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[u8] = b"servers.dc1.host0042.cpu.user 12.34 1700000000\nservers.dc1.host0043.cpu.user 7 1700000000\n";

    #[test]
    fn a_canonical_line_is_told_by_its_masks() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(fields(TWO, usize::MAX), Some(Some((29, 35, 46))));
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(fields(TWO, usize::MAX), None);
    }

    #[test]
    fn what_cannot_pass_is_told_too() {
        for (line, why) in [
            (
                &b"servers.a 12.50 1700000000\n"[..],
                "a trailing fractional zero",
            ),
            (b"servers.a -0 1700000000\n", "-0"),
            (b"servers.a 1e3 1700000000\n", "an exponent"),
            (b"servers.a 012 1700000000\n", "a leading zero"),
            (b"servers.a 1 9223372037\n", "a time beyond nanoseconds"),
            (b"servers.a 1 01\n", "a leading zero in the time"),
            (b"servers;a=b 1 1700000000\n", "a tag"),
            (b"servers.a  1 1700000000\n", "two spaces"),
            (b"servers.a 1 1700000000 x\n", "a fourth field"),
            (b" 1 1700000000\n", "an empty path"),
            (b"servers.a 1.2.3 1700000000\n", "two dots"),
            (b"servers.a 1234567890123456 1700000000\n", "sixteen digits"),
        ] {
            let mut input = line.to_vec();
            input.extend_from_slice(TWO);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(fields(&input, usize::MAX), Some(None), "{why}");
            assert_eq!(
                fields(&input, 10),
                if cfg!(target_arch = "x86_64") {
                    Some(None)
                } else {
                    None
                },
                "too long: {why}"
            );
        }
    }

    /// [`name_and_end`] is the two searches it replaces, wherever a line starts.
    #[test]
    fn name_and_end_is_the_two_searches() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 90) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| match next() % 10 {
                    0 => b' ',
                    1 => b'\n',
                    _ => b'a' + (next() % 26) as u8,
                })
                .collect();
            let mut start = 0;
            while start < body.len() {
                let end =
                    memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i + 1);
                let name_end =
                    start + memchr::memchr(b' ', &body[start..end]).unwrap_or(end - start);
                assert_eq!(
                    name_and_end(&body, start),
                    (name_end, end),
                    "{body:?} at {start}"
                );
                start = end;
            }
        }
    }
}
