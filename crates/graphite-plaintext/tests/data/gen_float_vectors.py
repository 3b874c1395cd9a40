#!/usr/bin/env python3
"""Writes float_vectors.tsv: how Python's float() reads tricky number spellings.

carbon parses the value and the timestamp of every plaintext line with float(), so the Rust
parser is checked against this file (tests/python_float.rs). Each line is

    <input>\t<result>

where <result> is `error` when float() raises ValueError, or the IEEE-754 bits of the result
as 16 hex digits (NaN normalized to 7ff8000000000000). Inputs are ASCII without whitespace:
fields never contain whitespace, and non-ASCII digits are deliberately not accepted.

Regenerate (deterministic):  python3 gen_float_vectors.py > float_vectors.tsv
"""

import random
import struct
import sys

HAND_PICKED = [
    # plain
    "0", "-0", "+0", "00", "007", "12", "-3", "+1", "1700000000", "1700000000.5",
    "12.5", "-12.5", ".5", "-.5", "+.5", "5.", "-5.", "0.0", "0.", ".0", "-0.0",
    # collectd %.15g
    "0.123456789012345", "1234567.89012345", "9.99999999999999e+99", "1e-05",
    "1.5e-07", "3.14159265358979", "-2.71828182845905", "100", "1e+15", "1e+16",
    # exponents
    "1e3", "1E3", "1e+3", "1e-3", "1e0", "1e-0", "1e+0", "2.5E-3", ".5e1", "5.e1", "0e0",
    "1e308", "1e309", "-1e309", "1e-324", "1e-400", "1e400", "1e0999", "1e-99999",
    "1e00000000000000000000000001",
    # special words
    "inf", "INF", "Inf", "-inf", "+inf", "infinity", "Infinity", "INFINITY", "-Infinity",
    "iNfInItY", "nan", "NaN", "NAN", "-nan", "+nan", "nAn",
    # underscores (PEP 515)
    "1_000", "1_000_000", "1_000.000_1", "1e1_0", "1_0e1_0", "0_0", "0_1", ".1_1", "1_1.",
    "_1", "1_", "1__0", "1_.5", "1._5", "1_e5", "1e_5", "1e5_", "+_1", "-_1", "_", "1_000_",
    "1.5_", "._5", "1e+_5", "1e-5_0",
    # not numbers
    "", "+", "-", ".", "..", "e", "E", "e1", ".e1", "1e", "1e+", "1e-", "++1", "--1", "+-1",
    "1.2.3", "1e2e3", "1e2.5", "0x10", "0X1p3", "0b1", "0o7", "in", "infin", "infinit",
    "infinityy", "infx", "nana", "nan1", "nan()", "nan(1)", "-", "1,5", "1d", "1f", "1L",
    "12abc", "abc", "None", "True", "1e1.0", "1ee1", "e+1", ".5.", "5..", "1.e", "1.e+",
    # precision
    "9007199254740992", "9007199254740993", "9007199254740994", "9007199254740995",
    "18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
    "0.1", "0.2", "0.3", "0.30000000000000004", "1.0000000000000002", "1.00000000000000011",
    "2.2250738585072011e-308", "2.2250738585072014e-308", "4.9406564584124654e-324",
    "2.4703282292062327e-324", "2.4703282292062328e-324", "1.7976931348623157e308",
    "1.7976931348623158e308", "1.7976931348623159e308",
    "0.1000000000000000055511151231257827021181583404541015625",
    "0.1000000000000000055511151231257827021181583404541015624",
    "0.1000000000000000055511151231257827021181583404541015626",
    "7.038531e-26", "8.98846567431158e307", "1.448997445238699", "4.35", "-99.99",
    "0.000000000000000000000000000000001", "123456789.123456789",
    "00000000000000000000000000000000000000000001.5",
    "1" + "0" * 400, "0." + "0" * 400 + "1", "1" * 30 + "." + "9" * 30,
]


def bits(x):
    if x != x:
        return "7ff8000000000000"
    return struct.pack(">d", x).hex()


def result(s):
    try:
        return bits(float(s))
    except ValueError:
        return "error"


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def digitpart(rng):
    """Digits with underscores, sometimes misplaced."""
    d = digits(rng, rng.randint(1, 12))
    if rng.random() < 0.3:
        i = rng.randint(0, len(d))
        d = d[:i] + "_" * rng.choice([1, 1, 1, 2]) + d[i:]
    return d


def generated(rng, n):
    out = []
    for _ in range(n):
        s = rng.choice(["", "", "-", "+"])
        shape = rng.random()
        if shape < 0.4:
            s += digitpart(rng)
            if rng.random() < 0.5:
                s += "." + (digitpart(rng) if rng.random() < 0.8 else "")
        elif shape < 0.6:
            s += "." + digitpart(rng)
        else:
            s += digits(rng, rng.randint(1, 20)) + "." + digits(rng, rng.randint(0, 20))
        if rng.random() < 0.35:
            s += rng.choice("eE") + rng.choice(["", "+", "-"]) + digitpart(rng)[:3]
        if rng.random() < 0.03:
            s = s.replace(rng.choice(s), rng.choice("._eE+-x"), 1) if s else "x"
        out.append(s)
    return out


def main():
    rng = random.Random(515)
    seen = set()
    lines = []
    for s in HAND_PICKED + generated(rng, 2000):
        if s in seen or any(c.isspace() for c in s):
            continue
        seen.add(s)
        lines.append("%s\t%s\n" % (s, result(s)))
    sys.stdout.write("".join(lines))


if __name__ == "__main__":
    main()
