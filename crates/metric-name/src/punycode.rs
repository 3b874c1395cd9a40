//! Python's `punycode` codec (`Lib/encodings/punycode.py`), step for step.
//!
//! This is RFC 3492 as CPython implements it, including what it does not check: no overflow
//! detection (Python integers are unbounded, so an over-long delta shows up only as
//! "Invalid character U+<huge hex>"), decoded code points may be lone surrogates, and
//! lowercase and uppercase digits are accepted alike. Code points are `u32` rather than
//! `char` for exactly that surrogate case.

/// What `punycode_decode` raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// `UnicodeDecodeError` from `str(part, "ascii")`: first non-ASCII byte and its index in
    /// the part Python was decoding (the text before or after the last `-`).
    NonAscii { byte: u8, position: usize },
    /// "incomplete punicode string" (sic).
    Incomplete,
    /// "Invalid extended code point '<c>'".
    InvalidDigit(char),
    /// "Invalid character U+<hex>", the hex of an arbitrarily large number.
    OutOfRange(String),
}

const BASE: u64 = 36;
const TMIN: i128 = 1;
const TMAX: i128 = 26;
const DIGITS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn threshold(j: u64, bias: u64) -> u64 {
    let t = 36 * (i128::from(j) + 1) - i128::from(bias);
    // Clamped to 1..=26, so the conversion is lossless.
    t.clamp(TMIN, TMAX) as u64
}

fn adapt(delta: u64, first: bool, numchars: u64) -> u64 {
    let mut delta = if first { delta / 700 } else { delta / 2 };
    delta += delta / numchars;
    let mut divisions = 0;
    while delta > 455 {
        delta /= 35;
        divisions += 36;
    }
    divisions + (36 * delta / (delta + 38))
}

/// `punycode_encode(text)`: the ASCII characters in order, `-` if there were any, then the
/// deltas. Appends to `out`.
pub(crate) fn encode(text: &[u32], out: &mut String) {
    let mut extended: Vec<u32> = text.iter().copied().filter(|&c| c >= 0x80).collect();
    extended.sort_unstable();
    extended.dedup();
    let base_len = text.len() - text.iter().filter(|&&c| c >= 0x80).count();
    out.extend(
        text.iter()
            .filter_map(|&c| u8::try_from(c).ok().filter(u8::is_ascii).map(char::from)),
    );
    if base_len > 0 {
        out.push('-');
    }

    // insertion_unsort, with Python's selective_len / selective_find folded in.
    let mut bias = 72;
    let mut points: u64 = 0;
    let mut oldchar: u64 = 0x80;
    let mut oldindex: i64 = -1;
    for &ch in &extended {
        let curlen = text.iter().filter(|&&c| c < ch).count() as u64;
        let mut delta = i64::try_from((curlen + 1) * (u64::from(ch) - oldchar)).unwrap_or(i64::MAX);
        let mut index: i64 = -1;
        for &c in text {
            if c == ch {
                index += 1;
                delta += index - oldindex;
                // insertion_unsort never yields a negative delta (RFC 3492 section 6.3).
                let d = u64::try_from(delta - 1).unwrap_or(0);
                generalized_integer(d, bias, out);
                bias = adapt(d, points == 0, base_len as u64 + points + 1);
                points += 1;
                oldindex = index;
                delta = 0;
            } else if c < ch {
                index += 1;
            }
        }
        oldchar = u64::from(ch);
    }
}

fn generalized_integer(mut n: u64, bias: u64, out: &mut String) {
    let mut j = 0;
    loop {
        let t = threshold(j, bias);
        if n < t {
            out.push(char::from(DIGITS[n as usize]));
            return;
        }
        out.push(char::from(DIGITS[(t + (n - t) % (BASE - t)) as usize]));
        n = (n - t) / (BASE - t);
        j += 1;
    }
}

fn ascii_check(part: &[u8]) -> Result<(), DecodeError> {
    match part.iter().position(|b| !b.is_ascii()) {
        Some(position) => Err(DecodeError::NonAscii {
            byte: part[position],
            position,
        }),
        None => Ok(()),
    }
}

/// `punycode_decode(text, "strict")` over bytes.
pub(crate) fn decode(text: &[u8]) -> Result<Vec<u32>, DecodeError> {
    let (base, extended) = match text.iter().rposition(|&b| b == b'-') {
        None => {
            ascii_check(text)?;
            (&text[..0], text)
        }
        Some(pos) => {
            ascii_check(&text[..pos])?;
            ascii_check(&text[pos + 1..])?;
            (&text[..pos], &text[pos + 1..])
        }
    };
    let mut out: Vec<u32> = base.iter().map(|&b| u32::from(b)).collect();

    let mut ch: u64 = 0x80;
    let mut pos: u64 = 0; // Python starts at -1 and adds delta + 1; this is pos + 1 - 1.
    let mut first_pos = true;
    let mut bias = 72;
    let mut extpos = 0;
    while extpos < extended.len() {
        let (newpos, number) = generalized_number(extended, extpos, bias)?;
        let len = out.len() as u64 + 1;
        // pos += delta + 1, with Python's initial -1 folded in.
        let step = match number {
            Number::Small(delta) => {
                let p = u128::from(pos) + u128::from(delta) + u128::from(!first_pos);
                let new_ch = u128::from(ch) + p / u128::from(len);
                if new_ch > 0x10_FFFF {
                    return Err(DecodeError::OutOfRange(format!("{new_ch:x}")));
                }
                // Both fit: new_ch is at most 0x10FFFF and the remainder is below len.
                ch = new_ch as u64;
                pos = (p % u128::from(len)) as u64;
                delta
            }
            Number::Huge => {
                let delta = big_number(&extended[extpos..newpos], bias);
                let p = delta.add_small(pos + u64::from(!first_pos));
                let value = p.div_small(len).add_small(ch);
                return Err(DecodeError::OutOfRange(value.to_hex()));
            }
        };
        first_pos = false;
        // pos < len <= out.len() + 1, so it is a valid insertion index.
        out.insert(pos as usize, ch as u32);
        bias = adapt(step, extpos == 0, out.len() as u64);
        extpos = newpos;
    }
    Ok(out)
}

enum Number {
    Small(u64),
    /// Too large for u64; only its exact value in an error message still matters.
    Huge,
}

fn digit_value(c: u8) -> Result<u64, DecodeError> {
    match c.to_ascii_uppercase() {
        c @ b'A'..=b'Z' => Ok(u64::from(c - b'A')),
        c @ b'0'..=b'9' => Ok(u64::from(c - b'0') + 26),
        // Python formats the character after str.upper(): non-letters are unchanged.
        _ => Err(DecodeError::InvalidDigit(char::from(c))),
    }
}

/// `decode_generalized_number`: returns the position after the number and its value.
fn generalized_number(
    extended: &[u8],
    mut extpos: usize,
    bias: u64,
) -> Result<(usize, Number), DecodeError> {
    let mut result: Option<u64> = Some(0);
    let mut w: Option<u64> = Some(1);
    let mut j = 0;
    loop {
        let Some(&c) = extended.get(extpos) else {
            return Err(DecodeError::Incomplete);
        };
        extpos += 1;
        let digit = digit_value(c)?;
        let t = threshold(j, bias);
        result = match (result, w) {
            (Some(r), Some(w)) => digit.checked_mul(w).and_then(|dw| r.checked_add(dw)),
            (Some(r), None) if digit == 0 => Some(r),
            _ => None,
        };
        if digit < t {
            return Ok((extpos, result.map_or(Number::Huge, Number::Small)));
        }
        w = w.and_then(|w| w.checked_mul(BASE - t));
        j += 1;
    }
}

/// The exact value of a generalized number whose digits are `digits` (already validated).
fn big_number(digits: &[u8], bias: u64) -> BigNat {
    let mut result = BigNat::from(0);
    let mut w = BigNat::from(1);
    for (j, &c) in digits.iter().enumerate() {
        let digit = digit_value(c).unwrap_or(0);
        let t = threshold(j as u64, bias);
        result = result.add(&w.mul_small(digit));
        w = w.mul_small(BASE - t);
    }
    result
}

/// Just enough unbounded arithmetic to print what Python prints for an out-of-range delta.
#[derive(Debug, Clone)]
struct BigNat(Vec<u32>);

impl From<u64> for BigNat {
    fn from(v: u64) -> Self {
        BigNat(vec![v as u32, (v >> 32) as u32]).trimmed()
    }
}

impl BigNat {
    fn trimmed(mut self) -> Self {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }

    fn mul_small(&self, m: u64) -> Self {
        let mut out = Vec::with_capacity(self.0.len() + 3);
        let mut carry: u128 = 0;
        for &limb in &self.0 {
            let v = u128::from(limb) * u128::from(m) + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        while carry > 0 {
            out.push(carry as u32);
            carry >>= 32;
        }
        BigNat(out).trimmed()
    }

    fn add(&self, other: &Self) -> Self {
        let n = self.0.len().max(other.0.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = 0u64;
        for i in 0..n {
            let v = u64::from(self.0.get(i).copied().unwrap_or(0))
                + u64::from(other.0.get(i).copied().unwrap_or(0))
                + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        out.push(carry as u32);
        BigNat(out).trimmed()
    }

    fn add_small(&self, v: u64) -> Self {
        self.add(&BigNat::from(v))
    }

    fn div_small(&self, d: u64) -> Self {
        let mut out = vec![0u32; self.0.len()];
        let mut rem: u128 = 0;
        for i in (0..self.0.len()).rev() {
            let cur = (rem << 32) | u128::from(self.0[i]);
            out[i] = (cur / u128::from(d)) as u32;
            rem = cur % u128::from(d);
        }
        BigNat(out).trimmed()
    }

    fn to_hex(&self) -> String {
        let mut s = String::new();
        for (i, limb) in self.0.iter().rev().enumerate() {
            if i == 0 {
                s.push_str(&format!("{limb:x}"));
            } else {
                s.push_str(&format!("{limb:08x}"));
            }
        }
        if s.is_empty() {
            s.push('0');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        let cps: Vec<u32> = s.chars().map(u32::from).collect();
        let mut out = String::new();
        encode(&cps, &mut out);
        out
    }

    fn dec(s: &str) -> Result<String, DecodeError> {
        decode(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|c| char::from_u32(c).unwrap_or('?'))
                .collect()
        })
    }

    #[test]
    fn python_encodings() {
        // Values from CPython 3.11: "...".encode("punycode").
        assert_eq!(enc(""), "");
        assert_eq!(enc("cpu"), "cpu-");
        assert_eq!(enc("\u{fc}"), "tda");
        assert_eq!(enc("b\u{fc}cher"), "bcher-kva");
        assert_eq!(enc("\u{1f4a9}"), "ls8h");
        assert_eq!(
            enc("\u{43f}\u{440}\u{438}\u{432}\u{435}\u{442}"),
            "b1agh1afp"
        );
        assert_eq!(enc("a.b"), "a.b-");
    }

    #[test]
    fn python_decodings() {
        assert_eq!(dec("bcher-kva").as_deref(), Ok("b\u{fc}cher"));
        assert_eq!(dec("abc").as_deref(), Ok("\u{82}\u{81}\u{80}"));
        assert_eq!(dec("").as_deref(), Ok(""));
        assert_eq!(dec("a-").as_deref(), Ok("a"));
        assert_eq!(dec("zz"), Err(DecodeError::Incomplete));
        assert_eq!(dec("a!"), Err(DecodeError::InvalidDigit('!')));
        assert_eq!(
            dec("a-99999999a"),
            Err(DecodeError::OutOfRange("8df99024".into()))
        );
        assert_eq!(
            dec("99999999999999999999999999999999999a"),
            Err(DecodeError::OutOfRange(
                "3957ddb385dac6aef08406c38e38109".into()
            ))
        );
        assert_eq!(
            dec("\u{fc}-a"),
            Err(DecodeError::NonAscii {
                byte: 0xc3,
                position: 0
            })
        );
        assert_eq!(
            dec("a-b\u{fc}"),
            Err(DecodeError::NonAscii {
                byte: 0xc3,
                position: 1
            })
        );
    }

    #[test]
    fn surrogates_decode_as_python_does() {
        // '\ud800'.encode('punycode') == b'8g8a' ... whatever the digits, decoding gives 0xd800.
        let mut out = String::new();
        encode(&[0xd800], &mut out);
        assert_eq!(decode(out.as_bytes()), Ok(vec![0xd800]));
    }

    #[test]
    fn bignat_hex() {
        assert_eq!(BigNat::from(0).to_hex(), "0");
        assert_eq!(
            BigNat::from(u64::MAX).mul_small(16).add_small(15).to_hex(),
            "fffffffffffffffff"
        );
        assert_eq!(
            BigNat::from(u64::MAX).mul_small(16).div_small(16).to_hex(),
            "ffffffffffffffff"
        );
    }
}
