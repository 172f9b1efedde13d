"""Pruning-rate lists: CHIP's compact strings such as "[0.]+[0.15]*2+[0.4]*27", or YAML lists.

Parsed by a small tokenizer, never eval: a spec is list terms joined by '+', each term a
bracketed list of numbers optionally repeated with '*k'. Lengths are counted before any list is
built, so a repeat count past what any model takes is refused without allocating it.
"""

from __future__ import annotations

import re
import sys

from prunelab import models
from prunelab.errors import PrunelabError, short

# Unambiguous (digits, optional '.digits', or '.digits'; optional exponent): no two ways to split
# a run of digits, so a failing match backtracks linearly.
_NUMBER = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_TERM = re.compile(rf"\s*\[\s*((?:{_NUMBER})(?:\s*,\s*(?:{_NUMBER}))*)?\s*,?\s*\]\s*(?:\*\s*([0-9]+))?\s*")

# Every compact rate sets at least one channel group, so no arch takes more rates than it has
# groups: this cap (91, ResNet-110's groups) bounds every accepted list with margin (ResNet-110
# takes 3 + 3*18 = 57 rates), and the arch's own check then asks for its exact count.
MAX_RATES = max(len(models.channel_groups(arch)) for arch in models.ARCHS)
# A rate needs a few characters ("0.15", "[0.4]*27" for many); 64 per rate admits any spelling a
# person writes and keeps the tokenizer's work on a hostile string small.
MAX_SPEC_CHARS = 64 * MAX_RATES


class SparsityError(PrunelabError):
    pass


def _rate(text: str, key: str) -> float:
    """float(text), refusing a nonzero literal that does not survive as a normal float: '1e-400'
    reads as 0.0 (an unpruned network written as pruned), '1e-310' as a subnormal."""
    r = float(text)
    nonzero = re.search(r"[1-9]", re.split(r"[eE]", text)[0]) is not None
    if nonzero and abs(r) < sys.float_info.min:
        raise SparsityError(f"{key}: the rate {short(text)} reads as {r}; write 0 or a rate of at least "
                            f"{sys.float_info.min:.3g}")
    return r


def _parse_string(spec: str, key: str) -> list[float]:
    if len(spec) > MAX_SPEC_CHARS:
        raise SparsityError(f"{key}: {short(spec)} is {len(spec)} characters; a spec holds at most {MAX_RATES} "
                            f"rates and {MAX_SPEC_CHARS} characters")
    terms, total = [], 0
    for term in spec.split("+"):
        m = _TERM.fullmatch(term)
        if not m:
            raise SparsityError(f"{key}: cannot parse {short(term.strip())} in {short(spec)}; "
                                "expected terms like [0.4]*27 joined by '+'")
        values = re.findall(_NUMBER, m.group(1) or "")
        count = m.group(2) or "1"
        # the length this term adds, known before it is built: at most MAX_RATES digits of count matter
        repeat = int(count) if len(count.lstrip("0")) <= len(str(MAX_RATES)) else MAX_RATES + 1
        total += len(values) * repeat
        if total > MAX_RATES:
            raise SparsityError(f"{key}: {short(spec)} holds more than {MAX_RATES} rates; no model takes more")
        terms.append(([_rate(v, key) for v in values], repeat))
    return [r for values, repeat in terms for r in values * repeat]


def _parse_list(spec: list | tuple, key: str) -> list[float]:
    if len(spec) > MAX_RATES:
        raise SparsityError(f"{key}: a list of {len(spec)} rates; no model takes more than {MAX_RATES}")
    rates = []
    for r in spec:
        if isinstance(r, str):
            try:
                rates.append(_rate(r.strip(), key))
                continue
            except ValueError as e:
                if isinstance(e, SparsityError):
                    raise
        elif isinstance(r, (int, float)) and not isinstance(r, bool):
            try:
                rates.append(float(r))
                continue
            except OverflowError:  # an int past float's range
                pass
        raise SparsityError(f"{key}: every rate must be a number, got {short(r)} in {short(spec)}")
    return rates


AUTO = "auto:"


def is_auto(spec) -> bool:
    """Whether a setting is `auto:<MACs reduction>`: rates the sensitivity stage picks."""
    return isinstance(spec, str) and spec.strip().startswith(AUTO)


def auto_target(spec: str, key: str, settings: dict) -> float | str:
    """'auto:0.55' -> 0.55 (a MACs reduction, a fraction in (0, 1)); 'auto:r2' -> 'r2' (the MACs
    reduction that setting's own rates give: a setting of prune.settings that is not auto)."""
    target = spec.strip()[len(AUTO):].strip()
    if target in settings:
        if is_auto(settings[target]):
            raise SparsityError(f"{key}: {short(spec)} names {target!r}, itself an auto: setting; name a setting "
                                "with rates, or give a MACs reduction in (0, 1)")
        return target
    try:
        value = float(target)
    except ValueError:
        raise SparsityError(f"{key}: {short(spec)}: expected auto:<MACs reduction in (0, 1)> or auto:<a setting "
                            f"with rates: {', '.join(k for k, v in settings.items() if not is_auto(v))}>") from None
    if not 0 < value < 1:
        raise SparsityError(f"{key}: {short(spec)}: the MACs reduction must be in (0, 1), got {value}")
    return value


def compact(rates: list[float]) -> str:
    """[0.0, 0.4, 0.4, 0.5] -> '[0.0]+[0.4]*2+[0.5]': runs of equal rates, parse_sparsity's inverse."""
    runs: list[list] = []
    for r in rates:
        if runs and runs[-1][0] == r:
            runs[-1][1] += 1
        else:
            runs.append([r, 1])
    return "+".join(f"[{r!r}]" + (f"*{k}" if k > 1 else "") for r, k in runs)


def parse_sparsity(spec: str | list | tuple, key: str = "sparsity") -> list[float]:
    """'[0.]+[0.15]*2' or [0.0, 0.15, 0.15] -> [0.0, 0.15, 0.15]; every rate must be in [0, 1),
    and a spec holds at most MAX_RATES rates."""
    if is_auto(spec):
        raise SparsityError(f"{key}: {short(spec)} is an auto: setting: its rates come from the sensitivity "
                            "stage (results/sensitivity.json), only in prune.settings of a pipeline that has it")
    if isinstance(spec, str):
        rates = _parse_string(spec, key)
    elif isinstance(spec, (list, tuple)):
        rates = _parse_list(spec, key)
    else:
        raise SparsityError(f"{key}: expected a string like '[0.]+[0.4]*2' or a list of rates, got {type(spec).__name__}")
    if not rates:
        raise SparsityError(f"{key}: {short(spec)} holds no rates")
    for i, r in enumerate(rates):
        if not 0.0 <= r < 1.0:
            raise SparsityError(f"{key}: rate #{i} is {r}; every rate must be in [0, 1)")
    return rates
