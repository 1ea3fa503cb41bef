"""YAML a user hands in (presets, training configs), parsed with bounds on what it can cost.

`yaml.safe_load` runs no code, but it trusts the document's shape: ten levels of aliases
of aliases ("billion laughs") load in a millisecond as a graph of shared lists and then
expand to 10^10 values in the first `str()`, `repr()` or walk over them; 5,000 nested
brackets end in a RecursionError inside PyYAML's composer; an integer of 5,000 digits in
a ValueError from Python's int-conversion limit; `2001-13-45` in a ValueError from
`datetime`. `load_yaml` bounds each before any value reaches the caller, and turns every
failure into one `ConfigError` line naming the file.
"""
from __future__ import annotations

import yaml

from singsynth.errors import ConfigError

# Far beyond any preset or config (the GM preset has about 700 values, 4 levels deep).
MAX_CHARS = 1_000_000   # text length: the pure-Python parser takes about 1 s a megabyte
MAX_DEPTH = 32          # nesting of mappings and lists, aliases expanded
MAX_VALUES = 100_000    # scalars, lists and mappings, every alias counted as expanded
MAX_DIGITS = 100        # of an integer (Python refuses to convert more than 4,300)


class _Refused(Exception):
    """A bound was crossed; the message says which, with the line of the document."""


def _where(node_or_event) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "somewhere"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH as it reads (its
    recursion would otherwise reach Python's limit) and whose int constructor refuses
    integers of more than MAX_DIGITS digits."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"YAML nested more than {MAX_DEPTH} levels deep ("
                               f"{_where(self.peek_event())}); a preset or config needs a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        text = str(node.value).replace("_", "")
        if len(text) > MAX_DIGITS:
            raise _Refused(f"an integer of {len(text)} digits ({_where(node)}; at most "
                           f"{MAX_DIGITS}); write a number in the allowed range")
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def check_expansion(root) -> None:
    """_Refused if the node graph `root`, with every alias expanded, holds more than
    MAX_VALUES nodes, is deeper than MAX_DEPTH or refers to itself (`&a [*a]`).

    Counted without expanding: an anchored node's (count, depth) is computed once and
    reused by every alias to it. Iterative, as alias chains can be deep.
    """
    done = {}          # id(node) -> (nodes, depth) with aliases expanded
    open_ = set()      # ids of the nodes on the path being walked
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = [done[id(k)] for k in _children(node)]
            count = 1 + sum(c for c, _ in kids)
            depth = 1 + max((d for _, d in kids), default=0)
            if count > MAX_VALUES:
                raise _Refused(f"YAML aliases expand to more than {MAX_VALUES:,} values "
                               f"({_where(node)}); write the values out, or alias less")
            if depth > MAX_DEPTH:
                raise _Refused(f"YAML aliases nest more than {MAX_DEPTH} levels deep ("
                               f"{_where(node)}); write the values out, or alias less")
            done[key] = (count, depth)
            open_.discard(key)
            continue
        if key in done:
            continue
        if key in open_:
            raise _Refused(f"a YAML alias refers to a value that contains it "
                           f"({_where(node)}); remove the loop")
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node))


def load_yaml(text: str, origin: str, fix: str = "fix the syntax"):
    """The Python value of the YAML document `text` (None for an empty one).

    Args:
        text: the document. origin: what to name in errors (the file's path).
        fix: what the user should do about a syntax error, ending its line.
    Raises:
        ConfigError: one line, for bad syntax, several documents, or a document past
            the bounds above (size, nesting, alias expansion, integer digits).
    """
    if len(text) > MAX_CHARS:
        raise ConfigError(f"{origin}: {len(text):,} characters is too long for a preset or "
                          f"config (at most {MAX_CHARS:,}); give the right file")
    loader = None
    try:
        loader = _BoundedLoader(text)   # its reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{origin}: not valid YAML ({first[:200]}); {fix}") from None
    # PyYAML's constructors raise these for scalars its resolver accepted but Python
    # cannot build (a 13th month, `!!int abc`, `!!timestamp 5`); RecursionError is a
    # last guard (the bounds above should keep it away).
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError,
            RecursionError) as exc:
        raise ConfigError(f"{origin}: a YAML value cannot be read ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); {fix}") from None
    finally:
        if loader is not None:
            loader.dispose()
