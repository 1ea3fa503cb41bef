"""Seeded mutators: bytes, YAML text and JSON values, each a pure function of an rng.

A case is reproducible from (target, seed, case number) alone: every random choice
comes from a `random.Random` seeded with them (see `fuzzing.case_rng`).
"""
from __future__ import annotations

import json
import math
import random
import re

# Bytes that mean something in the formats read here: MIDI status bytes and data limits,
# varint continuation, sysex, meta, and the edges of every width.
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0xB0, 0xC0, 0xE0, 0xF0,
                     0xF7, 0xFE, 0xFF)
# Big-endian 32-bit values for lengths and counts.
INTERESTING_U32 = (0, 1, 2, 6, 0x7F, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   0x80000000, 0xFFFFFFFF)
# Numbers for sizes, indices and settings: zero, signs, edges, float specials, huge.
INTERESTING_NUMBERS = (0, 1, -1, 2, 3, 7, 15, 16, 127, 128, 255, 256, 1023, 1024, 65535,
                       65536, 2 ** 31, 2 ** 63, -2 ** 63, 10 ** 30, 0.5, -0.5, 1e-300,
                       1e300, float("inf"), float("-inf"), float("nan"))
# YAML values: the types a preset or config key might get instead of the right one.
INTERESTING_YAML = (
    "0", "-1", "1e999", "-.inf", ".nan", "99999999999999999999999", "0x7fffffff", "0o777",
    "1_000", "true", "null", "~", "''", '"\\x00"', "[]", "{}", "[1, 2, 3]", "{a: 1}",
    "2001-13-45", "2001-12-14", "!!binary aGVsbG8=", "!!int ''", "!!float x", "!!set {a}",
    "!!python/object:os.system x", "*nowhere", "&a [*a]", "x" * 300, "\u202e\u0007\u001b[31m",
    "[[[[[[[[[[]]]]]]]]]]", "9" * 120, "1:2:3", "=", "<<: {}",
)


def flip_bytes(rng: random.Random, data: bytearray, start: int = 0) -> None:
    """Apply 1-8 byte-level edits to `data` in place (from `start` on, when possible);
    one edit most often, so that many cases stay readable and reach the code behind."""
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5, 8))):
        n = len(data)
        at = rng.randrange(min(start, n - 1), n) if n else 0
        op = rng.randrange(8)
        if op == 0 and n:                               # one bit
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                             # a meaningful byte
            data[at] = rng.choice(INTERESTING_BYTES)
        elif op == 2:                                   # random bytes inserted
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and n:                             # a range deleted
            del data[at:at + rng.randint(1, 64)]
        elif op == 4 and n:                             # a range repeated
            piece = data[at:at + rng.randint(1, 256)]
            data[at:at] = piece * rng.randint(1, 4)
        elif op == 5 and n >= 4:                        # a length or count replaced
            at = min(at, n - 4)
            data[at:at + 4] = rng.choice(INTERESTING_U32).to_bytes(4, "big")
        elif op == 6:                                   # a longest-possible varint
            data[at:at] = bytes([0xFF, 0xFF, 0xFF, 0x7F])
        elif op == 7 and n:                             # cut off
            del data[rng.randrange(n):]


# Values after "key: " or inside a flow list, and keys at the start of a line.
_VALUE = re.compile(r"(?<=: )[^\s,\]}#][^,\]}#\n]*|(?<=[\[,] )[^\s,\]}#]+")
_KEY = re.compile(r"^ *([\w.-]+):", re.M)


def _tokens(text: str) -> list:
    """(start, end) of every value and key in `text`."""
    return [m.span() for m in _VALUE.finditer(text)] + [m.span(1) for m in _KEY.finditer(text)]


def mutate_yaml(rng: random.Random, text: str) -> bytes:
    """`text` after 1-4 YAML-aware edits (a value or key replaced by one of
    INTERESTING_YAML, deep nesting, an anchor and an alias, lines dropped or repeated,
    laughs), as UTF-8, then in one case in five byte-level damage (maybe invalid UTF-8)."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        tokens = _tokens(text)
        op = rng.randrange(9)
        if op >= 7 and tokens:                          # a number nudged (often still valid)
            numbers = [(a, b) for a, b in tokens if re.fullmatch(r"-?[\d.]+(e-?\d+)?", text[a:b].strip())]
            if numbers:
                start, end = rng.choice(numbers)
                value = float(text[start:end])
                new = rng.choice((value * 2, value / 2, value + 1, value - 1, 0, -value, value * 1000))
                whole = math.isfinite(new) and new == int(new) and "." not in text[start:end]
                text = text[:start] + (str(int(new)) if whole else repr(new)) + text[end:]
        elif op <= 2 and tokens:                        # a value (or key) replaced
            start, end = rng.choice(tokens)
            text = text[:start] + rng.choice(INTERESTING_YAML) + text[end:]
        elif op == 3 and tokens:                        # nested deep
            start, end = rng.choice(tokens)
            depth = rng.choice((2, 10, 31, 40, 300, 3000))
            opener, closer = rng.choice((("[", "]"), ("{a: ", "}")))
            text = text[:start] + opener * depth + text[start:end] + closer * depth + text[end:]
        elif op == 4 and len(tokens) >= 2:              # an anchor, and an alias of it
            (s1, e1), (s2, e2) = sorted(rng.sample(tokens, 2))
            if e1 <= s2:
                text = text[:s1] + "&x " + text[s1:e1] + text[e1:s2] + "*x" + text[e2:]
        elif op == 5:                                   # a line dropped or repeated
            lines = text.splitlines()
            if lines:
                i = rng.randrange(len(lines))
                if rng.random() < 0.5:
                    del lines[i]
                else:
                    lines[i:i] = [lines[i]] * rng.randint(1, 50)
            text = "\n".join(lines) + "\n"
        else:                                           # laughs before the rest
            text = billion_laughs(rng.randint(2, 10), rng.randint(2, 10)) + text
    data = bytearray(text.encode("utf-8"))
    if rng.random() < 0.2:
        flip_bytes(rng, data)
    return bytes(data)


def billion_laughs(levels: int, width: int) -> str:
    """YAML whose `description` expands to width ** levels values through aliases."""
    lines = ["description:", "  - &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    lines.append(f"name: *l{levels - 1}")
    return "\n".join(lines) + "\n"


def interesting_json(rng: random.Random):
    """A JSON-able value of a surprising type or size, or raw JSON text (a str starting
    with '\\0', which `dumps_raw` writes unquoted: numbers JSON allows but Python cannot
    convert, nesting past the recursion limit)."""
    kind = rng.randrange(10)
    if kind <= 2:
        return rng.choice(INTERESTING_NUMBERS)
    if kind == 3:
        return rng.choice(("", "x", "../../etc/passwd", "a/b", ".hidden", "\x1b[31mred\n",
                           "é" * 200, "x" * 300))
    if kind == 4:
        return rng.choice((None, True, False))
    if kind == 5:
        return rng.choice(([], {}, [1], {"a": 1}, ["a"] * rng.randint(2, 2000)))
    if kind == 6:
        return "\0" + "9" * rng.choice((20, 400, 5000))
    if kind == 7:
        depth = rng.choice((10, 100, 5000))
        return "\0" + "[" * depth + "]" * depth
    if kind == 8:
        return "\0" + rng.choice(("NaN", "Infinity", "-Infinity", "1e999", "-0"))
    return [rng.choice(INTERESTING_NUMBERS) for _ in range(rng.randint(0, 5))]


def dumps_raw(value) -> str:
    """json.dumps, except that strings starting with '\\0' are written raw (see above)."""
    if isinstance(value, str) and value.startswith("\0"):
        return value[1:]
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dumps_raw(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps_raw(v) for v in value) + "]"
    return json.dumps(value)


def mutate_json_value(rng: random.Random, value):
    """A copy of the JSON value `value` with 1-3 edits at random paths: a value replaced
    by `interesting_json`, a key dropped or added, or the whole value replaced."""
    value = json.loads(json.dumps(value))
    for _ in range(rng.randint(1, 3)):
        containers = []

        def walk(v, depth=0):
            if isinstance(v, (dict, list)) and depth < 6:
                containers.append(v)
                for child in (v.values() if isinstance(v, dict) else v):
                    walk(child, depth + 1)
        walk(value)
        if not containers or rng.random() < 0.05:
            return interesting_json(rng)
        box = rng.choice(containers)
        keys = list(box) if isinstance(box, dict) else list(range(len(box)))
        op = rng.randrange(4)
        if keys and op <= 1:
            box[rng.choice(keys)] = interesting_json(rng)
        elif keys and op == 2:
            del box[rng.choice(keys)]
        elif isinstance(box, dict):
            box[rng.choice(("extra", "", "__proto__", "x" * 300))] = interesting_json(rng)
        else:
            box.append(interesting_json(rng))
    return value
