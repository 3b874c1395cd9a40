#!/usr/bin/env python3
"""Generate tests/vectors.json: what the reference GraphiteEncoder does with each input.

The reference is aiographite's GraphiteEncoder, run here as the two expressions it consists
of (the documented idna variant, and the punycode variant aiographite 0.2.0 ships):

    encode: urllib.parse.quote(s.encode(CODEC)).replace('.', '%2E')
    decode: bytes(urllib.parse.unquote(s), 'utf-8').decode(CODEC)

Each case records, for both variants and both directions, either the result ({"ok": ...}) or
`str(exc)` of the exception Python raised ({"error": ...}, plus "type" when it is not a plain
UnicodeError). The codec machinery wraps one-argument UnicodeErrors in "encoding with 'idna'
codec failed (UnicodeError: <message>)", so the innermost message is the text after the last
"(UnicodeError: " with the closing parentheses removed. A decode that
yields a lone surrogate (possible with punycode; Rust strings cannot hold one) is recorded
as {"surrogate": <code point>}.

Inputs: hand-picked cases, a few thousand seeded random strings, and every successful
encoding fed back to decode. Deterministic: the same interpreter gives the same file.

Usage: python3 scripts/gen_vectors.py            (from crates/metric-name)
"""

import json
import os
import random
import sys
import unicodedata
import urllib.parse

if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
    sys.exit("gen_vectors.py must run under CPython 3.11 (the reference interpreter)")
assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "vectors.json")


def encode(codec, s):
    return urllib.parse.quote(s.encode(codec)).replace(".", "%2E")


def decode(codec, s):
    return bytes(urllib.parse.unquote(s), "utf-8").decode(codec)


def innermost(e):
    """The message of the exception the codec itself raised."""
    while e.__cause__ is not None:
        e = e.__cause__
    return str(e)


def run(f, *args):
    try:
        r = f(*args)
    except (UnicodeError, ValueError) as e:
        out = {"error": str(e)}
        if type(e) is not UnicodeError:
            out["type"] = type(e).__name__
        # The innermost message is what `str(e)` wraps; tests peel it off the same way.
        assert str(e).endswith(innermost(e) + ")" * str(e).count("codec failed (")), e
        return out
    for ch in r:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return {"surrogate": ord(ch)}
    return {"ok": r}


def case(s, note=None):
    c = {"input": s}
    if note:
        c["note"] = note
    for codec in ("idna", "punycode"):
        c[codec] = {"encode": run(encode, codec, s), "decode": run(decode, codec, s)}
    return c


CURATED = [
    # ASCII: the fast path, lengths, dots
    ("", "empty"),
    ("cpu", None), ("cpu_user", None), ("host0001", None), ("servers", None),
    ("CPU", "ASCII keeps its case"), ("MixedCase-Name_01~x", None),
    ("a/b", "slash is safe in quote()"), ("~user", None),
    ("a.b", "dot becomes %2E"), ("www.example.com", None), ("1.2.3.4", None),
    ("a..b", "empty label"), (".a", "leading dot"), ("a.", "trailing dot is allowed"),
    (".", None), ("..", None), ("a..", None), ("...", None),
    ("a" * 63, "63-byte label"), ("a" * 64, "64-byte last label: 'label too long'"),
    ("a" * 63 + ".b", None), ("a" * 64 + ".b", "64-byte inner label"),
    ("b." + "a" * 63, None), ("b." + "a" * 64, None), ("a" * 64 + ".", None),
    ("a" * 63 + ".", None), ("a" * 200, None),
    ("with space", None), ("tab\there", None), ("new\nline", None), ("\x00", None), ("\x7f", None),
    ("q?x=1&y=2", None), ("#hash", None), ("semi;colon", None), ("eq=al", None),
    ("quote'\"", None), ("back\\slash", None), ("100%", None), ("per%cent", None),
    ("[]{}<>|`^", None), ("!$&'()*+,;=:@", None),
    # already encoded
    ("%41", None), ("%2E", None), ("a%2Eb", None), ("%2e", None), ("%%", None), ("%zz", None),
    ("%", None), ("%4", None), ("%C3%BC", None), ("%c3%bc", None), ("%FF", None), ("%C3", None),
    ("%C3x", None), ("%F0%9F%9A%80", None), ("%ED%A0%80", "encoded surrogate: invalid UTF-8"),
    ("%E2%82", None), ("a%20b", None), ("%2F", None), ("%00", None),
    ("xn--", None), ("xn---", None), ("xn--a", None), ("xn--abc", None), ("xn--abc-", "does not round-trip"),
    ("xn--bcher-kva", None), ("XN--BCHER-KVA", "uppercase prefix is not an ACE prefix"),
    ("xn--BCHER-KVA", None), ("xn--Bcher-kva", None), ("xn--bcher-kva.xn--bcher-kva", None),
    ("xn--bcher-kva%2Exn--bcher-kva", None), ("xn--ls8h", None), ("xn--zz", None), ("xn--a!", None),
    ("xn--a'b", None), ("xn--a.", None), ("xn--99999999a", None),
    ("xn--99999999999999999999999999999999999a", "huge delta"), ("xn--ab--c", None),
    ("xn--d1acpjx3f.xn--p1ai", None), ("xn--wgv71a119e", None), ("xn--n3h", None), ("xn--tda.", None),
    ("a.xn--tda..b", None), ("xn--a-ecp.ru", None), ("xn--tda%2Ea", None), ("xn--%FF", None),
    ("%FFxn--", None), ("xn--%C3%BC", None), ("xn--zca", None), ("xn--strae-oqa", None),
    ("xn--1ca", None), ("xn--8ca1a", None), ("axn--b", None), ("xn--" + "a" * 70, None),
    ("xn--mgbh0fb", None), ("xn--4dbrk0ce", None), ("xn--ngb", None),
    ("cpu-", None), ("abc", None), ("a-", None), ("-", None), ("a-5z9f", None),
    ("bcher-kva", None), ("zz", None), ("a!", None), ("a-99999999a", None), ("\u00fc-a", None),
    # unicode: scripts, case folding, normalization
    ("bücher", None), ("Bücher", None), ("BÜCHER", None), ("münchen.de", None),
    ("Straße", "nameprep folds ß to ss"), ("ß", None), ("ẞ", None), ("İstanbul", None), ("ς", None),
    ("Σίσυφος", None), ("ΑΒΓ", None), ("пример", None), ("Пример.рф", None), ("москва", None),
    ("東京", None), ("中文.中国", None), ("日本語ドメイン", None), ("서울", None), ("한국어", None),
    ("ﾊﾝｶｸ", "halfwidth katakana, NFKC"), ("ＦＵＬＬ", "fullwidth, NFKC to ASCII"), ("ｆｕｌｌ", None),
    ("ﬁ", None), ("㎒", None), ("①", None), ("™", None), ("½", None), ("Å", None), ("Ⅻ", None),
    ("e\u0301", "composes"), ("\u1100\u1161\u11a8", "jamo compose"), ("ǅ", None), ("ΐ", None),
    ("ﬀ", None), ("Ⓐ", None), ("ᾈ", None), ("\u0345", None), ("a\u0345", None),
    ("a\u2024b", "ONE DOT LEADER: NFKC makes a dot inside a label"), ("\u2025", None), ("\u2026", None),
    ("\ufe52", None), ("⒈", None), ("a⒈b", None),
    ("🚀", None), ("💩", None), ("😀😃", None), ("👨\u200d👩\u200d👧", "ZWJ maps to nothing"),
    ("❤\ufe0f", "variation selector maps to nothing"), ("🇩🇪", None), ("👍🏽", None),
    ("\u1dc0", "unassigned in Unicode 3.2"), ("a\u1dc0\u0316", "current combining classes"),
    ("\U00011099\U000110ba", "post-3.2 composition"), ("\u0870", None), ("\U0001f970", None),
    # NFKC under ucd_3_2_0 differs from today's Unicode (and from the unicode-normalization
    # crate): post-3.2 compatibility characters stay, corrigenda use the old mappings.
    ("\U0001f100", "DIGIT ZERO FULL STOP: NFKC today gives '0.'"), ("\u3250", None), ("\ua7f8", None),
    ("\u03f9", None), ("\u1d2c", None), ("\U0002f868", "Corrigendum 4"), ("\U0002f874", None),
    ("\U0002f91f", None), ("\U0002f9bf", None), ("\uf951", None), ("a\U0001f100b", None),
    # bidi
    ("مرحبا", None), ("العربية", None), ("שלום", None), ("עברית", None), ("\u05d0a", None),
    ("a\u05d0", None), ("\u05d01", None), ("\u05d01\u05d1", None), ("\u0627\u0661\u0628", None),
    ("\u05d0\u0301", None), ("\u05d0.a", "bidi is per label"), ("1\u05d0", None),
    # separators
    ("a\u3002b", None), ("a\uff0eb", None), ("a\uff61b", None), ("ü\u3002", None), ("ü\u3002\u3002", None),
    ("\u3002", None), ("ü.", None), (".ü", None), ("ü..ü", None), ("a\u3002", None), ("\u3002a", None),
    ("ü\uff0e\u00fc\uff61\u00fc.\u00fc", None),
    # prohibited and mapped-to-nothing
    ("a\u200e", None), ("\u00a0", None), ("a\u00a0b", "NBSP becomes a space"), ("\u2028", None),
    ("\ue000", None), ("\U000f0000", None), ("\U0010fffd", None), ("\ufdd0", None), ("\ufffe", None),
    ("\uffff", None), ("\ufffc", None), ("\ufffd", None), ("\u2ff0", None), ("\u0340", None),
    ("\u0341", None), ("a\u0340", None), ("\u202e", None), ("\U000e0001", None), ("\U000e0041", None),
    ("\u0080", None), ("\u009f", None), ("\u06dd", None), ("\u180e", None), ("\U0001d173", None),
    ("\u3000", None), ("\u2000", None), ("\u200b", None), ("\u00ad", None), ("a\u00adb", None),
    ("\ufeff", None), ("\u2060", None), ("\u206a", None), ("\ufff9", None),
    # ACE prefix and lengths in the non-ASCII path
    ("xn--ü", None), ("XN--ü", None), ("xn--\u00ad", None), ("a" * 64 + ".ü", None), ("ü." + "a" * 64, None),
    ("ü" * 20, None), ("ü" * 59, None), ("ü" * 60, None), ("ü" * 100, None),
    ("ü %", None), ("ü/x", None), ("ü?", None), ("ü\x00", None),
    ("a\ud7a3", None),
]


def boundary_cases():
    out = []
    for k in range(40, 64):
        s = "a" * k + "ü"
        try:
            n = len(s.encode("idna"))
        except UnicodeError:
            n = 99
        if n in (62, 63, 64, 65):
            out.append((s, "xn-- label of %d bytes" % n))
    for k in range(1, 30):
        s = "日" * k
        try:
            n = len(s.encode("idna"))
        except UnicodeError:
            n = 99
        if n in (63, 64) or (n == 99 and len(out) < 12):
            out.append((s, None))
    return out


POOLS = {
    "safe": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-~/",
    "ascii_other": " %?#&=+;:,'\"\\!@$^*()[]{}<>|`\t\x00\x7f",
    "dots": ".\u3002\uff0e\uff61",
    "latin": "äöüßÀÉÎõçñøåæœÿÄÖÜẞİı",
    "greek": "αβγδεζΣσςΆΐ",
    "cyrillic": "абвгдеёжзийкПРИМЕР",
    "cjk": "東京中文日本語漢字",
    "hangul": "서울한국어\u1100\u1161\u11a8\u1112\u1175\u11c2",
    "kana": "ｱｲｳﾞｶﾞアイウ",
    "arabic": "مرحبا\u0661\u064b",
    "hebrew": "שלום\u05b0\u05d0",
    "combining": "\u0300\u0301\u0308\u0316\u0323\u0345\u1dc0\u20d0\u0327\u0338",
    "compat": "ﬁ㎒①™½Ⅻ\u2024ｆＡ\u2025⒈\ufe52",
    "b1": "\u00ad\u200b\u200d\ufe0f\u2060\u034f",
    "prohibited": "\u00a0\u200e\u202e\ue000\ufffc\ufffd\u2ff0\u0340\u2028\U000e0001\ufdd0\U000f0000\u0080\u3000",
    "emoji": "🚀💩😀🇩🇪❤👍🏽",
    "post32": "\u0870\U00011099\U000110ba\u1dc0\U0001f970",
}
WEIGHTS = {"safe": 30, "dots": 6, "ascii_other": 4}


def random_string(rnd):
    pools = [p for p in POOLS if p in WEIGHTS or rnd.random() < 0.25]
    weights = [WEIGHTS.get(p, 3) for p in pools]
    n = rnd.choice([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 40, 62, 63, 64, 65])
    return "".join(rnd.choice(POOLS[rnd.choices(pools, weights)[0]]) for _ in range(n))


def random_encoded(rnd):
    kind = rnd.randrange(4)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    if kind == 0:
        body = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 14)))
        if rnd.random() < 0.3:
            body = body.upper()
        return "xn--" + body
    if kind == 1:
        parts = []
        for _ in range(rnd.randint(1, 6)):
            if rnd.random() < 0.5:
                parts.append("%%%02X" % rnd.randrange(256))
            else:
                parts.append(rnd.choice(["a", "b", ".", "%", "%2", "xn--", "-", "ü", "%2E", "%c3%bc"]))
        return "".join(parts)
    if kind == 2:
        return "".join(rnd.choice(alphabet + "AZ.") for _ in range(rnd.randint(0, 12)))
    return ".".join(random_encoded(rnd) for _ in range(rnd.randint(2, 3)))


def join_cases():
    lists = [
        ["servers", "dc1", "host0001", "cpu", "user"],
        ["servers", "db 1.example", "cpu"],
        ["a", "", "b"],
        ["münchen", "ü.ö", "東京"],
        ["ok", "a..b", "x" * 70],
        ["a" * 64],
        [],
        [""],
        ["x.", ".y"],
    ]
    out = []
    for parts in lists:
        c = {"parts": parts}
        for codec in ("idna", "punycode"):
            c[codec] = run(lambda: ".".join(encode(codec, p) for p in parts))
        out.append(c)
    return out


def main():
    rnd = random.Random(20031)
    inputs = []
    seen = set()

    def add(s, note=None):
        if s not in seen:
            seen.add(s)
            inputs.append((s, note))

    for s, note in CURATED + boundary_cases():
        add(s, note)
    add("\ud800".encode("punycode").decode("ascii"), "decodes to a lone surrogate (punycode)")
    add("a-" + "\udfff".encode("punycode").decode("ascii").lstrip("-"), None)
    for _ in range(2500):
        add(random_string(rnd))
    for _ in range(1000):
        add(random_encoded(rnd))
    # Feed encodings back to decode (all idna ones, a sample of punycode ones).
    for i, (s, _) in enumerate(list(inputs)):
        for codec in ("idna", "punycode"):
            if codec == "punycode" and i % 4:
                continue
            try:
                add(encode(codec, s))
            except UnicodeError:
                pass

    cases = [case(s, note) for s, note in inputs]
    doc_head = {
        "generator": "scripts/gen_vectors.py",
        "python": sys.version.split()[0],
        "unidata_version": unicodedata.unidata_version,
    }
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n")
        for k, v in doc_head.items():
            f.write("%s: %s,\n" % (json.dumps(k), json.dumps(v)))
        f.write('"joins": [\n' + ",\n".join(json.dumps(c, ensure_ascii=False) for c in join_cases()) + "\n],\n")
        f.write('"cases": [\n' + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n}\n")
    print("wrote %s: %d cases" % (os.path.normpath(OUT), len(cases)))


if __name__ == "__main__":
    main()
