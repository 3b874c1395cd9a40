//! Nameprep (RFC 3491) exactly as CPython 3.11's `encodings.idna.nameprep` performs it.
//!
//! Two things make "exactly" differ from a textbook implementation, and both are
//! reproduced here on purpose, from tables that `scripts/gen_tables.py` reads off the
//! interpreter:
//! - `unicodedata.ucd_3_2_0.normalize("NFKC", …)` decomposes with Unicode 3.2 data but sorts
//!   and composes with the interpreter's current combining classes and composition pairs
//!   (Unicode 14.0). So a mark added after 3.2 is still reordered, and two post-3.2
//!   characters can compose (U+11099 U+110BA becomes U+1109A). The `unicode-normalization`
//!   crate, on its current tables, would decompose post-3.2 characters that Python leaves
//!   alone and would not match.
//! - Python's nameprep allows unassigned code points (it assumes query strings), so there is
//!   no table A.1 check.
//!
//! Code points are `u32` because `ToUnicode` re-runs nameprep on punycode output, which may
//! hold lone surrogates.

use crate::tables;

/// Why nameprep refused a label; the texts are Python's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameprepError {
    /// "Invalid character %r": the first prohibited code point after normalization.
    Prohibited(u32),
    /// "Violation of BIDI requirement 2": RandALCat and LCat in one label.
    Bidi2,
    /// "Violation of BIDI requirement 3": RandALCat present but not first and last.
    Bidi3,
}

const S_BASE: u32 = 0xAC00;
const L_BASE: u32 = 0x1100;
const V_BASE: u32 = 0x1161;
const T_BASE: u32 = 0x11A7;
const L_COUNT: u32 = 19;
const V_COUNT: u32 = 21;
const T_COUNT: u32 = 28;
const N_COUNT: u32 = V_COUNT * T_COUNT;
const S_COUNT: u32 = L_COUNT * N_COUNT;

fn in_ranges(table: &[(u32, u32)], c: u32) -> bool {
    let i = table.partition_point(|&(_, end)| end < c);
    table.get(i).is_some_and(|&(start, _)| start <= c)
}

fn lookup_str(table: &'static [(u32, &'static str)], c: u32) -> Option<&'static str> {
    table
        .binary_search_by_key(&c, |&(k, _)| k)
        .ok()
        .map(|i| table[i].1)
}

fn ccc(c: u32) -> u8 {
    if c < 0x300 || is_quick(c) {
        return 0;
    }
    let i = tables::CCC.partition_point(|&(_, end, _)| end < c);
    match tables::CCC.get(i) {
        Some(&(start, _, class)) if start <= c => class,
        _ => 0,
    }
}

fn compose_pair(first: u32, second: u32) -> Option<u32> {
    // Every second element of a pair is at least U+0300 (checked in the tests).
    if second < 0x300 || is_quick(second) {
        return None;
    }
    tables::COMPOSE
        .binary_search_by(|&(a, b, _)| (a, b).cmp(&(first, second)))
        .ok()
        .map(|i| tables::COMPOSE[i].2)
}

/// Whether `c` starts any composition pair (`find_nfc_index(nfc_first, c) != -1`).
fn is_first(c: u32) -> bool {
    let i = tables::COMPOSE.partition_point(|&(a, _, _)| a < c);
    tables::COMPOSE.get(i).is_some_and(|&(a, _, _)| a == c)
}

pub(crate) fn is_prohibited(c: u32) -> bool {
    c >= 0x80 && !is_quick(c) && in_ranges(tables::PROHIBITED, c)
}

/// Whether Python's `repr` shows this prohibited code point literally.
pub(crate) fn is_printable_prohibited(c: u32) -> bool {
    in_ranges(tables::PRINTABLE_PROHIBITED, c)
}

/// See `quick` in `scripts/gen_tables.py`: the table lookups below can all be skipped for
/// such a character.
#[inline]
fn is_quick(c: u32) -> bool {
    match usize::try_from(c) {
        Ok(i) if i < 0x10000 => tables::QUICK_BMP[i / 64] >> (i % 64) & 1 == 1,
        _ => in_ranges(tables::QUICK_SUPPLEMENTARY, c),
    }
}

fn is_rand_al(c: u32) -> bool {
    c >= 0x590 && !is_quick(c) && in_ranges(tables::D1, c)
}

fn is_l(c: u32) -> bool {
    in_ranges(tables::D2, c)
}

/// `nameprep(label)`: map (B.1, B.2), normalize (NFKC), prohibit, check bidi. `out` is
/// cleared first; `scratch` is reused working space.
pub(crate) fn nameprep(
    label: &[u32],
    out: &mut Vec<u32>,
    scratch: &mut Vec<u32>,
) -> Result<(), NameprepError> {
    // Most labels (CJK, lowercase Cyrillic or Greek, emoji) are left as they are: one bit
    // lookup per character instead of eight table searches.
    if label.iter().all(|&c| c < 0x80 || is_quick(c)) {
        out.clear();
        out.extend(label.iter().map(|&c| {
            if (0x41..=0x5a).contains(&c) {
                c + 0x20
            } else {
                c
            }
        }));
        return Ok(());
    }
    nameprep_full(label, out, scratch)
}

fn nameprep_full(
    label: &[u32],
    out: &mut Vec<u32>,
    scratch: &mut Vec<u32>,
) -> Result<(), NameprepError> {
    scratch.clear();
    for &c in label {
        if c < 0x80 {
            scratch.push(u32::from(
                u8::try_from(c).map_or(0, |b| b.to_ascii_lowercase()),
            ));
            continue;
        }
        if is_quick(c) {
            scratch.push(c);
            continue;
        }
        if tables::B1.binary_search(&c).is_ok() {
            continue;
        }
        match lookup_str(tables::B2, c) {
            Some(mapped) => scratch.extend(mapped.chars().map(u32::from)),
            None => scratch.push(c),
        }
    }
    nfkc(scratch, out);

    if let Some(&bad) = out.iter().find(|&&c| is_prohibited(c)) {
        return Err(NameprepError::Prohibited(bad));
    }
    if out.iter().any(|&c| is_rand_al(c)) {
        if out.iter().any(|&c| is_l(c)) {
            return Err(NameprepError::Bidi2);
        }
        let first = out.first().is_some_and(|&c| is_rand_al(c));
        let last = out.last().is_some_and(|&c| is_rand_al(c));
        if !first || !last {
            return Err(NameprepError::Bidi3);
        }
    }
    Ok(())
}

/// `ucd_3_2_0.normalize("NFKC", input)`, a port of `nfd_nfkd` + `nfc_nfkc` in CPython's
/// `Modules/unicodedata.c`. `input` is used as scratch space.
fn nfkc(input: &mut Vec<u32>, out: &mut Vec<u32>) {
    // Decompose into `out`.
    out.clear();
    for &c in input.iter() {
        if (S_BASE..S_BASE + S_COUNT).contains(&c) {
            let s = c - S_BASE;
            out.push(L_BASE + s / N_COUNT);
            out.push(V_BASE + (s % N_COUNT) / T_COUNT);
            if !s.is_multiple_of(T_COUNT) {
                out.push(T_BASE + s % T_COUNT);
            }
        } else if c < 0xA0 || is_quick(c) {
            out.push(c);
        } else if let Some(d) = lookup_str(tables::DECOMP, c) {
            out.extend(d.chars().map(u32::from));
        } else {
            out.push(c);
        }
    }

    // Canonical ordering. unicodedata.c runs an insertion sort, which amounts to a stable
    // sort of each run of non-starters by combining class; a stable sort per run gives the
    // same order without the quadratic worst case on long runs of marks.
    let mut start = 0;
    while start < out.len() {
        if ccc(out[start]) == 0 {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        while end < out.len() && ccc(out[end]) != 0 {
            end += 1;
        }
        if end - start > 1 {
            out[start..end].sort_by_key(|&c| ccc(c));
        }
        start = end;
    }

    // Compose from `out` into `input`, then swap them.
    let decomposed: &[u32] = out;
    input.clear();
    let n = decomposed.len();
    let mut skipped: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < n {
        if let Some(k) = skipped.iter().position(|&s| s == i) {
            skipped.swap_remove(k);
            i += 1;
            continue;
        }
        let code = decomposed[i];
        if (L_BASE..L_BASE + L_COUNT).contains(&code)
            && i + 1 < n
            && (V_BASE..V_BASE + V_COUNT).contains(&decomposed[i + 1])
        {
            let mut syllable =
                S_BASE + ((code - L_BASE) * V_COUNT + decomposed[i + 1] - V_BASE) * T_COUNT;
            i += 2;
            if i < n && decomposed[i] > T_BASE && decomposed[i] < T_BASE + T_COUNT {
                syllable += decomposed[i] - T_BASE;
                i += 1;
            }
            input.push(syllable);
            continue;
        }
        if !is_first(code) {
            input.push(code);
            i += 1;
            continue;
        }
        let mut current = code;
        let mut i1 = i + 1;
        let mut comb = 0u8;
        while i1 < n {
            let code1 = decomposed[i1];
            let comb1 = ccc(code1);
            if comb != 0 {
                if comb1 == 0 {
                    break;
                }
                if comb >= comb1 {
                    i1 += 1;
                    continue;
                }
            }
            match compose_pair(current, code1) {
                Some(composite) => {
                    current = composite;
                    skipped.push(i1);
                    i1 += 1;
                    if !is_first(current) {
                        break;
                    }
                }
                None => {
                    if comb1 == 0 {
                        break;
                    }
                    comb = comb1;
                    i1 += 1;
                }
            }
        }
        input.push(current);
        i += 1;
    }
    std::mem::swap(input, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(s: &str) -> Result<String, NameprepError> {
        let label: Vec<u32> = s.chars().map(u32::from).collect();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        nameprep(&label, &mut out, &mut scratch)?;
        Ok(out.into_iter().filter_map(char::from_u32).collect())
    }

    #[test]
    fn shortcuts_hold_for_the_tables() {
        assert!(tables::COMPOSE
            .iter()
            .all(|&(_, second, _)| second >= 0x300));
        assert!(tables::CCC.iter().all(|&(start, _, _)| start >= 0x300));
        assert!(tables::DECOMP.iter().all(|&(c, _)| c >= 0xa0));
        assert!(tables::PROHIBITED.iter().all(|&(start, _)| start >= 0x80));
        assert!(tables::D1.iter().all(|&(start, _)| start >= 0x590));
        assert!(tables::B1.iter().all(|&c| c >= 0x80));
        for c in 0..0x80u32 {
            let folded =
                lookup_str(tables::B2, c).map_or(c, |m| m.chars().next().map_or(c, u32::from));
            assert_eq!(
                folded,
                u32::from(u8::try_from(c).unwrap().to_ascii_lowercase())
            );
        }
    }

    #[test]
    fn quick_characters_need_no_nameprep() {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let quick: Vec<u32> = (0x80..0x11_0000).filter(|&c| is_quick(c)).collect();
        assert!(quick.len() > 200_000);
        for &c in &quick {
            nameprep_full(&[c], &mut out, &mut scratch).unwrap();
            assert_eq!(out, [c], "U+{c:04X}");
        }
        // Pairs and triples, including ASCII in either case and Hangul syllables.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut pick = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..200_000 {
            let label: Vec<u32> = (0..3)
                .map(|_| match pick(4) {
                    0 => 0x41 + pick(58) as u32,
                    1 => 0xAC00 + pick(11172) as u32,
                    _ => quick[pick(quick.len())],
                })
                .collect();
            nameprep_full(&label, &mut out, &mut scratch).unwrap();
            let (mut fast, mut unused) = (Vec::new(), Vec::new());
            nameprep(&label, &mut fast, &mut unused).unwrap();
            assert_eq!(out, fast, "{label:x?}");
        }
    }

    #[test]
    fn maps_folds_and_normalizes() {
        assert_eq!(prep("Stra\u{df}e").as_deref(), Ok("strasse"));
        assert_eq!(prep("\u{130}").as_deref(), Ok("i\u{307}"));
        assert_eq!(prep("\u{3a3}\u{3c2}").as_deref(), Ok("\u{3c3}\u{3c3}"));
        assert_eq!(prep("a\u{ad}b").as_deref(), Ok("ab"));
        assert_eq!(prep("\u{fb01}").as_deref(), Ok("fi"));
        assert_eq!(prep("\u{3392}").as_deref(), Ok("mhz"));
        assert_eq!(prep("e\u{301}").as_deref(), Ok("\u{e9}"));
        assert_eq!(prep("\u{1100}\u{1161}\u{11a8}").as_deref(), Ok("\u{ac01}"));
        assert_eq!(prep("\u{ac01}").as_deref(), Ok("\u{ac01}"));
    }

    #[test]
    fn current_combining_classes_and_pairs_as_python() {
        // Python 3.11: ucd_3_2_0.normalize('NFKC', 'a\u1dc0\u0316') == 'a\u0316\u1dc0'
        assert_eq!(prep("a\u{1dc0}\u{316}").as_deref(), Ok("a\u{316}\u{1dc0}"));
        // ... and composes two characters that Unicode 3.2 did not have.
        assert_eq!(prep("\u{11099}\u{110ba}").as_deref(), Ok("\u{1109a}"));
    }

    #[test]
    fn long_runs_of_marks_are_not_quadratic() {
        let mut label = vec![0x61];
        label.extend(std::iter::repeat_n(0x301, 50_000));
        label.extend(std::iter::repeat_n(0x316, 50_000));
        label.extend(std::iter::repeat_n(0x308, 50_000));
        let started = std::time::Instant::now();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        nameprep(&label, &mut out, &mut scratch).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // a + U+0316 composes with nothing; the first U+0301 (ccc 230) after the U+0316s
        // (ccc 220) composes with the a.
        assert_eq!(out[0], 0xe1);
        assert!(out[1..50_001].iter().all(|&c| c == 0x316));
        assert_eq!(out.len(), 150_000);
    }

    #[test]
    fn prohibits_and_checks_bidi() {
        assert_eq!(prep("a\u{200e}"), Err(NameprepError::Prohibited(0x200e)));
        assert_eq!(prep("\u{fffc}"), Err(NameprepError::Prohibited(0xfffc)));
        assert_eq!(prep("\u{e000}"), Err(NameprepError::Prohibited(0xe000)));
        assert_eq!(prep("\u{5d0}a"), Err(NameprepError::Bidi2));
        assert_eq!(prep("\u{5d0}1"), Err(NameprepError::Bidi3));
        assert_eq!(prep("\u{5d0}1\u{5d1}").as_deref(), Ok("\u{5d0}1\u{5d1}"));
        // Non-ASCII space maps to itself under B.2, NFKC turns it into an ASCII space,
        // which is not prohibited (only C.1.2, non-ASCII space, is).
        assert_eq!(prep("a\u{a0}").as_deref(), Ok("a "));
    }

    #[test]
    fn surrogates_are_prohibited() {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        assert_eq!(
            nameprep(&[0x61, 0xd800], &mut out, &mut scratch),
            Err(NameprepError::Prohibited(0xd800))
        );
    }
}
