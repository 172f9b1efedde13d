"""Pruning-rate lists: CHIP's compact strings such as "[0.]+[0.15]*2+[0.4]*27", or YAML lists.

Parsed by a small tokenizer, never eval: a spec is list terms joined by '+', each term a
bracketed list of numbers optionally repeated with '*k'.
"""

from __future__ import annotations

import re

from prunelab.errors import PrunelabError

_NUMBER = r"-?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|-?[0-9]+\."
_TERM = re.compile(rf"\s*\[\s*((?:{_NUMBER})(?:\s*,\s*(?:{_NUMBER}))*)?\s*,?\s*\]\s*(?:\*\s*([0-9]+))?\s*")


class SparsityError(PrunelabError):
    pass


def parse_sparsity(spec: str | list | tuple, key: str = "sparsity") -> list[float]:
    """'[0.]+[0.15]*2' or [0.0, 0.15, 0.15] -> [0.0, 0.15, 0.15]; every rate must be in [0, 1)."""
    if isinstance(spec, (list, tuple)):
        try:
            rates = [float(r) for r in spec]
        except (TypeError, ValueError):
            raise SparsityError(f"{key}: every rate must be a number, got {list(spec)!r}") from None
    elif isinstance(spec, str):
        rates = []
        for term in spec.split("+"):
            m = _TERM.fullmatch(term)
            if not m:
                raise SparsityError(
                    f"{key}: cannot parse {term.strip()!r} in {spec!r}; expected terms like [0.4]*27 joined by '+'"
                )
            values = [float(v) for v in re.findall(_NUMBER, m.group(1) or "")]
            rates += values * (int(m.group(2)) if m.group(2) else 1)
    else:
        raise SparsityError(f"{key}: expected a string like '[0.]+[0.4]*2' or a list of rates, got {type(spec).__name__}")
    if not rates:
        raise SparsityError(f"{key}: {spec!r} holds no rates")
    for i, r in enumerate(rates):
        if not 0.0 <= r < 1.0:
            raise SparsityError(f"{key}: rate #{i} is {r}; every rate must be in [0, 1)")
    return rates
