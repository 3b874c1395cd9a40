#!/usr/bin/env python3
"""Generate src/tables.rs: the nameprep (RFC 3491) tables exactly as CPython 3.11 applies them.

CPython's `encodings.idna` runs nameprep with `stringprep` (Unicode 3.2 tables via
`unicodedata.ucd_3_2_0`), but its NFKC is a hybrid: decompositions come from Unicode 3.2
(plus the 3.2 normalization corrigenda), while canonical combining classes and composition
pairs come from the interpreter's current database (Unicode 14.0.0 in 3.11). Every table
below is therefore read off the running interpreter by evaluating Python's own predicates
on every code point, and the NFKC port is checked against `ucd_3_2_0.normalize` before
anything is written.

Usage: python3 scripts/gen_tables.py            (from crates/metric-name; writes src/tables.rs)
"""

import os
import random
from encodings.idna import nameprep
import stringprep
import sys
import unicodedata
from unicodedata import ucd_3_2_0

if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
    sys.exit("gen_tables.py must run under CPython 3.11 (the reference interpreter)")
assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "tables.rs")

ALL = range(0x110000)  # surrogates included: punycode decoding can produce them
SBASE, SCOUNT = 0xAC00, 11172
LBASE, LCOUNT, VBASE, VCOUNT, TBASE, TCOUNT = 0x1100, 19, 0x1161, 21, 0x11A7, 28


def ranges(pred):
    out, start = [], None
    for c in ALL:
        if pred(c):
            if start is None:
                start = c
        elif start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def valued_ranges(value):
    out = []
    for c in ALL:
        v = value(c)
        if not v:
            continue
        if out and out[-1][1] == c - 1 and out[-1][2] == v:
            out[-1] = (out[-1][0], c, v)
        else:
            out.append((c, c, v))
    return out


def prohibited(c):
    ch = chr(c)
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
    )


def is_surrogate(c):
    return 0xD800 <= c <= 0xDFFF


B1 = [c for c in ALL if stringprep.in_table_b1(chr(c))]
B2 = {}
for c in ALL:
    if is_surrogate(c):
        continue
    m = stringprep.map_table_b2(chr(c))
    if m != chr(c):
        B2[c] = m

# Full compatibility decomposition of each code point under ucd_3_2_0 (the stack-based
# recursion of unicodedata.c, corrigenda included). Hangul syllables are algorithmic.
DECOMP = {}
for c in ALL:
    if is_surrogate(c) or SBASE <= c < SBASE + SCOUNT:
        continue
    d = ucd_3_2_0.normalize("NFKD", chr(c))
    if d != chr(c):
        DECOMP[c] = d

# unicodedata.c sorts and blocks with _getrecord_ex(code)->combining: the CURRENT database.
CCC = valued_ranges(lambda c: unicodedata.combining(chr(c)))
CCC_OF = {}
for a, b, v in CCC:
    for c in range(a, b + 1):
        CCC_OF[c] = v


def ccc(c):
    return CCC_OF.get(c, 0)


# Composition pairs: makeunicodedata.py over the CURRENT database: canonical two-character
# decompositions whose first character is a starter and which are not composition
# exclusions (an excluded character does not survive NFC).
COMPOSE = {}
for c in ALL:
    if is_surrogate(c):
        continue
    d = unicodedata.decomposition(chr(c))
    if not d or d.startswith("<"):
        continue
    parts = [int(x, 16) for x in d.split()]
    if len(parts) != 2 or ccc(parts[0]) != 0:
        continue
    if unicodedata.normalize("NFC", chr(c)) != chr(c):
        continue
    COMPOSE[(parts[0], parts[1])] = c

SECONDS = {b for _, b in COMPOSE}


def quick(c):
    """Nameprep leaves a label made only of such characters (and ASCII, lower-cased) as it is.

    Not mapped, no decomposition, combining class 0, never the second half of a composition
    pair, not prohibited, not RandALCat (so no bidi rule can fire), and no Hangul jamo (an
    LV syllable followed by a trailing jamo composes).
    """
    if c < 0x80 or is_surrogate(c) or 0x1100 <= c <= 0x11FF:
        return False
    ch = chr(c)
    return (
        not stringprep.in_table_b1(ch)
        and c not in B2
        and c not in DECOMP
        and ccc(c) == 0
        and c not in SECONDS
        and not prohibited(c)
        and not stringprep.in_table_d1(ch)
    )


QUICK_BMP = [0] * (0x10000 // 64)
for c in range(0x10000):
    if quick(c):
        QUICK_BMP[c // 64] |= 1 << (c % 64)
QUICK_SUPPLEMENTARY = [r for r in ranges(quick) if r[1] >= 0x10000]
QUICK_SUPPLEMENTARY = [(max(a, 0x10000), b) for a, b in QUICK_SUPPLEMENTARY]
FIRSTS = {a for a, _ in COMPOSE}
PROHIBITED = ranges(prohibited)
PRINTABLE_PROHIBITED = ranges(lambda c: prohibited(c) and chr(c).isprintable())
D1 = ranges(lambda c: stringprep.in_table_d1(chr(c)))
D2 = ranges(lambda c: stringprep.in_table_d2(chr(c)))


# --- a Python port of the Rust algorithm, checked against CPython before writing -------------
# (Same results as unicodedata.c's nfd_nfkd + nfc_nfkc, restructured the way the Rust port is:
# per-run stable sort instead of insertion sort, no composition scan from a character that
# starts no pair.)

def nfkc_model(s):
    cps = [ord(x) for x in s]
    out = []
    for c in cps:
        if SBASE <= c < SBASE + SCOUNT:
            i = c - SBASE
            out.append(LBASE + i // (VCOUNT * TCOUNT))
            out.append(VBASE + (i % (VCOUNT * TCOUNT)) // TCOUNT)
            if i % TCOUNT:
                out.append(TBASE + i % TCOUNT)
        elif c in DECOMP:
            out.extend(ord(x) for x in DECOMP[c])
        else:
            out.append(c)
    # canonical ordering: unicodedata.c's insertion sort is a stable sort of each run of
    # non-starters by combining class, which is how the Rust port does it
    start = 0
    while start < len(out):
        if ccc(out[start]) == 0:
            start += 1
            continue
        end = start + 1
        while end < len(out) and ccc(out[end]) != 0:
            end += 1
        out[start:end] = sorted(out[start:end], key=ccc)
        start = end
    # composition, exactly as unicodedata.c's nfc_nfkc
    res = []
    skipped = []
    i = 0
    n = len(out)
    while i < n:
        if i in skipped:
            skipped.remove(i)
            i += 1
            continue
        code = out[i]
        if LBASE <= code < LBASE + LCOUNT and i + 1 < n and VBASE <= out[i + 1] < VBASE + VCOUNT:
            code = SBASE + ((code - LBASE) * VCOUNT + out[i + 1] - VBASE) * TCOUNT
            i += 2
            if i < n and TBASE < out[i] < TBASE + TCOUNT:
                code += out[i] - TBASE
                i += 1
            res.append(code)
            continue
        if code not in FIRSTS:
            res.append(code)
            i += 1
            continue
        cur = code
        i1 = i + 1
        comb = 0
        while i1 < n:
            code1 = out[i1]
            comb1 = ccc(code1)
            if comb:
                if comb1 == 0:
                    break
                if comb >= comb1:
                    i1 += 1
                    continue
            composed = COMPOSE.get((cur, code1))
            if composed is None:
                if comb1 == 0:
                    break
                comb = comb1
                i1 += 1
                continue
            cur = composed
            skipped.append(i1)
            i1 += 1
            if cur not in FIRSTS:
                break
        res.append(cur)
        i += 1
    return "".join(map(chr, res))


def check_model():
    interesting = sorted(
        set(DECOMP) | set(CCC_OF) | {a for a, _ in COMPOSE} | {b for _, b in COMPOSE}
        | set(range(LBASE, LBASE + LCOUNT + 2)) | set(range(VBASE - 1, VBASE + VCOUNT + 1))
        | set(range(TBASE - 1, TBASE + TCOUNT + 1)) | {0xAC00, 0xAC01, 0xD7A3, 0x41, 0x61, 0x20}
    )
    for c in ALL:
        if is_surrogate(c):
            continue
        want = ucd_3_2_0.normalize("NFKC", chr(c))
        got = nfkc_model(chr(c))
        assert want == got, (hex(c), want, got)
    rnd = random.Random(3491)
    for _ in range(300000):
        s = "".join(chr(rnd.choice(interesting)) for _ in range(rnd.choice([2, 3, 4, 5, 6, 7, 9, 12, 16])))
        want = ucd_3_2_0.normalize("NFKC", s)
        got = nfkc_model(s)
        assert want == got, ([hex(ord(x)) for x in s], want, got)


def check_quick():
    rnd = random.Random(3490)
    pool = [c for c in range(0x80, 0x30000) if quick(c)] + list(range(0x20, 0x7F))
    for _ in range(100000):
        s = "".join(chr(rnd.choice(pool)) for _ in range(rnd.randint(1, 8)))
        want = "".join(x.lower() if x < "\x80" else x for x in s)
        assert nameprep(s) == want, [hex(ord(x)) for x in s]


def lit(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % o)
    return '"' + "".join(out) + '"'


def chunks(items, per_line):
    for i in range(0, len(items), per_line):
        yield "    " + " ".join(items[i:i + per_line])


def write():
    lines = [
        "// @generated by scripts/gen_tables.py from CPython %s (unicodedata %s, ucd_3_2_0)."
        % (sys.version.split()[0], unicodedata.unidata_version),
        "// Do not edit by hand: rerun the script.",
        "",
        "/// RFC 3454 table B.1: code points nameprep maps to nothing.",
        "#[rustfmt::skip]",
        "pub(crate) static B1: &[u32] = &[",
        *chunks(["0x%x," % c for c in B1], 10),
        "];",
        "",
        "/// `stringprep.map_table_b2`: case folding for NFKC, as Python computes it.",
        "#[rustfmt::skip]",
        "pub(crate) static B2: &[(u32, &str)] = &[",
        *chunks(["(0x%x, %s)," % (c, lit(m)) for c, m in sorted(B2.items())], 6),
        "];",
        "",
        "/// Full compatibility decomposition under `ucd_3_2_0` (Hangul syllables are algorithmic).",
        "#[rustfmt::skip]",
        "pub(crate) static DECOMP: &[(u32, &str)] = &[",
        *chunks(["(0x%x, %s)," % (c, lit(d)) for c, d in sorted(DECOMP.items())], 6),
        "];",
        "",
        "/// Canonical combining classes of the current database, as inclusive ranges.",
        "#[rustfmt::skip]",
        "pub(crate) static CCC: &[(u32, u32, u8)] = &[",
        *chunks(["(0x%x, 0x%x, %d)," % r for r in CCC], 6),
        "];",
        "",
        "/// Canonical composition pairs `(first, second, composite)`, sorted.",
        "#[rustfmt::skip]",
        "pub(crate) static COMPOSE: &[(u32, u32, u32)] = &[",
        *chunks(["(0x%x, 0x%x, 0x%x)," % (a, b, c) for (a, b), c in sorted(COMPOSE.items())], 5),
        "];",
        "",
        "/// Characters nameprep leaves alone (see `quick` in the script), one bit per BMP code point.",
        "#[rustfmt::skip]",
        "pub(crate) static QUICK_BMP: [u64; 1024] = [",
        *chunks(["0x%x," % w for w in QUICK_BMP], 8),
        "];",
        "",
        "/// The same above the BMP, as inclusive ranges.",
        "#[rustfmt::skip]",
        "pub(crate) static QUICK_SUPPLEMENTARY: &[(u32, u32)] = &[",
        *chunks(["(0x%x, 0x%x)," % r for r in QUICK_SUPPLEMENTARY], 6),
        "];",
        "",
        "/// Prohibited output: RFC 3454 C.1.2, C.2.2, C.3 to C.9, inclusive ranges.",
        "#[rustfmt::skip]",
        "pub(crate) static PROHIBITED: &[(u32, u32)] = &[",
        *chunks(["(0x%x, 0x%x)," % r for r in PROHIBITED], 6),
        "];",
        "",
        "/// Prohibited code points that Python's `repr` prints literally (`str.isprintable`).",
        "#[rustfmt::skip]",
        "pub(crate) static PRINTABLE_PROHIBITED: &[(u32, u32)] = &[",
        *chunks(["(0x%x, 0x%x)," % r for r in PRINTABLE_PROHIBITED], 6),
        "];",
        "",
        "/// RFC 3454 D.1: bidirectional categories R and AL (RandALCat).",
        "#[rustfmt::skip]",
        "pub(crate) static D1: &[(u32, u32)] = &[",
        *chunks(["(0x%x, 0x%x)," % r for r in D1], 6),
        "];",
        "",
        "/// RFC 3454 D.2: bidirectional category L (LCat).",
        "#[rustfmt::skip]",
        "pub(crate) static D2: &[(u32, u32)] = &[",
        *chunks(["(0x%x, 0x%x)," % r for r in D2], 6),
        "];",
        "",
    ]
    with open(OUT, "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    check_model()
    check_quick()
    write()
    print(
        "wrote %s: B1 %d, B2 %d, DECOMP %d, CCC %d, COMPOSE %d, PROHIBITED %d, D1 %d, D2 %d"
        % (os.path.normpath(OUT), len(B1), len(B2), len(DECOMP), len(CCC), len(COMPOSE),
           len(PROHIBITED), len(D1), len(D2))
    )
