"""Property-based tests: the sparsity parser and the params check, driven with arbitrary strings,
numbers, nested structures and YAML text, raise nothing but the project's one-line errors (or
succeed), and each example stays within a bounded time (hypothesis' deadline) and memory."""

import copy
import math
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ROOT
from prunelab import config
from prunelab.errors import PrunelabError
from prunelab.sparsity import MAX_RATES, parse_sparsity

# deadline: generous (2 s; the checks take milliseconds) so a loaded machine does not flake;
# no example database written into the checkout
FUZZ = settings(deadline=2000, max_examples=200, database=None, suppress_health_check=[HealthCheck.too_slow])
MEMORY = 32 << 20  # peak Python heap per example

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "paper" / "params.yaml").read_text())

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
           | st.sampled_from(["[0.]*300000000", "1e-400", "[0.4]*27", "../..", "/", "auto", "cifar10", "resnet56"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=6), max_leaves=30)


def within_memory(fn) -> None:
    """fn() raises only a PrunelabError or returns, with a bounded heap peak."""
    tracemalloc.start()
    try:
        fn()
    except PrunelabError as e:
        assert "\n" not in str(e), str(e)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY, peak


def leaf_paths(node, prefix=()) -> list[tuple]:
    if isinstance(node, dict):
        return [prefix] + [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))]
    return [prefix]


def replaced(params: dict, path: tuple, value) -> dict:
    params = copy.deepcopy(params)
    if not path:
        return value
    node = params
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return params


def check_rates(spec) -> None:
    rates = parse_sparsity(spec)
    assert 1 <= len(rates) <= MAX_RATES and all(isinstance(r, float) and 0 <= r < 1 for r in rates)


spec_text = st.text(alphabet="[]0123456789.,+*eE- \t", max_size=80)


@FUZZ
@given(spec=spec_text | st.text(max_size=200) | st.lists(scalars, max_size=120) | scalars)
def test_the_sparsity_parser_raises_only_its_error(spec):
    within_memory(lambda: check_rates(spec))


@FUZZ
@given(rates=st.lists(st.floats(0, 1, exclude_max=True, allow_subnormal=False), min_size=1, max_size=MAX_RATES),
       repeat=st.integers(1, 4))
def test_written_rates_parse_back_to_themselves(rates, repeat):
    spec = f"[{', '.join(map(repr, rates))}]*{repeat}"
    if len(rates) * repeat > MAX_RATES:
        with pytest.raises(PrunelabError, match=str(MAX_RATES)):
            parse_sparsity(spec)
    else:
        assert parse_sparsity(spec) == rates * repeat  # repr round-trips a float exactly
        assert all(math.isfinite(r) for r in rates)


@FUZZ
@given(path=st.sampled_from(leaf_paths(DEFAULT)), value=values)
def test_the_params_check_raises_only_a_config_error(path, value):
    within_memory(lambda: config.validate(replaced(DEFAULT, path, value)))


@FUZZ
@given(path=st.sampled_from(leaf_paths(PAPER)), value=values)
def test_the_paper_params_check_raises_only_a_config_error(path, value):
    within_memory(lambda: config.validate_paper(replaced(PAPER, path, value)))


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "params.yaml"


@FUZZ
@given(path=st.sampled_from(leaf_paths(DEFAULT)), value=values, noise=st.text(max_size=30),
       at=st.integers(0, 10_000))
def test_reading_any_yaml_text_raises_only_a_config_error(params_file, path, value, noise, at):
    text = yaml.safe_dump(replaced(DEFAULT, path, value), sort_keys=False)
    at %= len(text) + 1
    params_file.write_text(text[:at] + noise + text[at:])  # a structured file, then damaged
    within_memory(lambda: config.load_any(params_file))


@FUZZ
@given(text=st.text(max_size=300))
def test_reading_arbitrary_text_raises_only_a_config_error(params_file, text):
    params_file.write_text(text)
    within_memory(lambda: config.load_any(params_file))
