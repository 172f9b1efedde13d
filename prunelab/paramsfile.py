"""Read a params file's YAML in bounded time and memory, importing neither torch nor numpy.

stages call numerics.prepare() before torch and numpy load, and it reads engine.cpu_numerics
from the params file: so the reader lives here, apart from config's schema (which imports both).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from prunelab.errors import ConfigError, short

# A params file is a few KB (the paper's: 5 KB, 442 values once its anchors are expanded).
# These bounds, 6x and 45x that, keep a hostile file from costing more than a moment: composing
# takes about 25 us a value, so 32 KB of "0," (16,000 values) takes under half a second, and a
# YAML anchor bomb (a few lines that expand to billions of values) is refused by its count.
MAX_PARAMS_BYTES = 1 << 15
MAX_PARAMS_NODES = 20_000
# PyYAML's scanner is quadratic in flow nesting ('[[[...' 1000 deep: 1.3 s) and its composer
# recursive; params nest 5 levels deep, so nesting is bounded first, on the raw bytes: brackets
# (counted in strings and comments too, which only errs towards refusing) and indentation.
MAX_NESTING = 32
MAX_INDENT = 128
# libyaml's parser (shipped in PyYAML's wheels) reads a 1 MB list in 0.3 s where the pure-Python
# one takes 11 s; the same safe constructor builds the values either way.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _check_nesting(data: bytes) -> None:
    depth = 0
    for m in _BRACKETS.finditer(data):  # at most MAX_PARAMS_BYTES matches
        depth += 1 if m.group() in b"[{" else -1
        if depth > MAX_NESTING:
            raise ConfigError(f"nested more than {MAX_NESTING} brackets deep ([ and {{ counted anywhere)")
    if re.search(rb"(?m)^[ \t]{%d}[ \t]*[^#\s]" % MAX_INDENT, data):
        raise ConfigError(f"a value indented more than {MAX_INDENT} columns")


def _expanded_nodes(node: yaml.Node, sizes: dict[int, int | None]) -> int:
    """Values `node` stands for with every alias expanded; counted once per distinct node, so
    linear in the file. sizes: id(node) -> count, None while the node is being counted (a cycle)."""
    if id(node) in sizes:
        if sizes[id(node)] is None:
            raise ConfigError("an anchor holds itself (a recursive structure)")
        return sizes[id(node)]
    sizes[id(node)] = None
    children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                else node.value if isinstance(node, yaml.SequenceNode) else [])
    sizes[id(node)] = n = min(1 + sum(_expanded_nodes(c, sizes) for c in children), MAX_PARAMS_NODES + 1)
    return n


def _check_duplicate_keys(node: yaml.Node, seen: set[int]) -> None:
    """Refuse a mapping that names a key twice: YAML loaders keep the last one silently, so
    `seed: 0` then `seed: 7` would run seed 7 (DVC refuses such a file; a stage run directly
    must too). Walks each distinct node once (aliases share theirs)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in lines:
                    raise ConfigError(f"key {short(key.value)} appears twice in one mapping (lines "
                                      f"{lines[key.value] + 1} and {key.start_mark.line + 1}); keep one")
                lines[key.value] = key.start_mark.line
            _check_duplicate_keys(value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, seen)


def read(path: str | Path) -> dict:
    """A params file's YAML, refusing files past MAX_PARAMS_BYTES or MAX_PARAMS_NODES expanded
    values, and mappings that name a key twice."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes; a params file holds at most {MAX_PARAMS_BYTES}")
    loader = None
    try:
        data = path.read_bytes()
        _check_nesting(data)
        loader = _LOADER(data)
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > MAX_PARAMS_NODES:
            raise ConfigError(f"holds more than {MAX_PARAMS_NODES} values with its YAML aliases expanded")
        if node is not None:
            _check_duplicate_keys(node, set())
        return (loader.construct_document(node) if node is not None else None) or {}
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0][:200]})") from None
    except (ValueError, RecursionError) as e:  # an int past 4,300 digits; nesting deeper than Python's stack
        raise ConfigError(f"{path}: not a usable params file ({type(e).__name__}: {short(str(e))})") from None
    finally:
        if loader is not None:
            loader.dispose()
