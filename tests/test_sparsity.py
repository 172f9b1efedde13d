import pytest

from prunelab import models
from prunelab.sparsity import SparsityError, parse_sparsity

ROW1 = "[0.]+[0.15]*2+[0.4]*27"
ROW2 = "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9"


def test_chip_strings_expand_like_python_lists():
    assert parse_sparsity(ROW1) == [0.0] + [0.15] * 2 + [0.4] * 27
    assert parse_sparsity(ROW2) == [0.0] + [0.4] * 2 + [0.5] * 9 + [0.6] * 9 + [0.7] * 9
    assert parse_sparsity("[0.1, 0.2]*2 + [.3]") == [0.1, 0.2, 0.1, 0.2, 0.3]
    assert parse_sparsity([0, 0.5]) == [0.0, 0.5]


@pytest.mark.parametrize("bad", ["[1.0]", "[0.]+[1.5]*2", "[-0.1]", [0.2, 1.0]])
def test_rates_outside_unit_interval_are_refused(bad):
    with pytest.raises(SparsityError, match=r"\[0, 1\)"):
        parse_sparsity(bad)


@pytest.mark.parametrize("bad", ["__import__('os').system('true')", "[0.1]*x", "0.1", "[0.1]+", "", "[]", [], ["a"]])
def test_garbage_is_refused_without_eval(bad):
    with pytest.raises(SparsityError):
        parse_sparsity(bad)


def test_widths_of_chip_row1():
    w = models.pruned_widths("resnet56", parse_sparsity(ROW1))
    assert w["stem"] == 16
    assert w["out"] == [13] * 9 + [27] * 9 + [64] * 9  # int(16*.85), int(32*.85); stage 3 never pruned
    assert w["inner"] == [9] * 9 + [19] * 9 + [38] * 9  # int(16*.6), int(32*.6), int(64*.6)


def test_wrong_number_of_rates_names_the_expected_count():
    with pytest.raises(ValueError, match="takes 30 rates"):
        models.group_rates("resnet56", [0.1] * 29)


def test_the_rate_cap_is_resnet110_s_group_count_exactly():
    """No arch takes more rates than ResNet-110's channel groups, counted by hand: the stem, the
    inner channels of its 3 x 18 blocks and the block outputs of stages 1 and 2, 1 + 54 + 36 = 91.
    91 rates, however written, are accepted; 92 are refused, as a string and as a YAML list."""
    from prunelab.sparsity import MAX_RATES

    assert MAX_RATES == 1 + 3 * 18 + 2 * 18 == 91
    for spec, expected in (("[0.1]*91", [0.1] * 91), ("[0.1]*90+[0.2]", [0.1] * 90 + [0.2]),
                           ("[0.1, 0.2]*45+[0.3]", [0.1, 0.2] * 45 + [0.3]), ("[0.1]*091", [0.1] * 91),
                           ([0.1] * 91, [0.1] * 91), (tuple([0.2] * 91), [0.2] * 91)):
        assert parse_sparsity(spec) == expected
    for spec in ("[0.1]*92", "[0.1]*91+[0.2]", "[0.1, 0.2]*46", "[0.1]+[0.2]*91"):
        with pytest.raises(SparsityError, match="holds more than 91 rates"):
            parse_sparsity(spec)
    for spec in ([0.1] * 92, tuple([0.2] * 92)):  # a list just over the cap, every rate valid
        with pytest.raises(SparsityError, match="a list of 92 rates; no model takes more than 91"):
            parse_sparsity(spec)


def test_a_spec_of_64_characters_per_rate_is_read_and_one_more_is_refused():
    """The length bound (sparsity.MAX_SPEC_CHARS: 64 characters for each of the 91 rates, 5,824)
    refuses what is past it, not what is at it: a term padded with spaces to exactly 5,824
    characters is read."""
    at_cap = "[0.1]" + " " * (64 * 91 - 5)
    assert len(at_cap) == 5824 and parse_sparsity(at_cap) == [0.1]
    with pytest.raises(SparsityError, match="5825 characters"):
        parse_sparsity(at_cap + " ")


@pytest.mark.parametrize("bad", [[True, 0.5], [0.5, False], [False], (0.1, True)])
def test_booleans_in_a_rate_list_are_refused(bad):
    """YAML reads true/false as booleans, which Python would count as 1 and 0: a rate list holding
    one is a typo, refused as not a number (not read as a rate of 0 or 1)."""
    with pytest.raises(SparsityError, match="every rate must be a number"):
        parse_sparsity(bad)


def test_compact_writes_every_digit_of_its_rates():
    """compact is parse_sparsity's inverse: rates that six significant digits would shorten
    (0.1234567 -> 0.123457, 1/3) come back exactly; the expected string written by hand."""
    from prunelab.sparsity import compact

    rates = [0.1234567] * 3 + [0.5] + [1 / 3] + [0.1234567]
    text = compact(rates)
    assert text == "[0.1234567]*3+[0.5]+[0.3333333333333333]+[0.1234567]"
    assert parse_sparsity(text) == rates


def test_an_auto_target_is_a_reduction_strictly_between_0_and_1():
    """auto:<MACs reduction> takes a fraction in (0, 1): auto:1 would remove every MAC and auto:0
    none; both are refused, and auto:0.5 is 0.5."""
    from prunelab.sparsity import auto_target

    settings = {"r1": "[0.4]*30"}
    assert auto_target("auto:0.5", "k", settings) == 0.5
    assert auto_target("auto:r1", "k", settings) == "r1"
    for spec in ("auto:1", "auto:1.0", "auto:0", "auto:-0.2"):
        with pytest.raises(SparsityError, match=r"must be in \(0, 1\)"):
            auto_target(spec, "k", settings)


def test_an_auto_setting_is_recognised_with_surrounding_spaces():
    """The report reads a setting ' auto:r1 ' (quoted in YAML, spaces kept) as an auto: setting
    (report.AUTO allows the spaces); the params check reads it the same way: never as rates."""
    from prunelab import report
    from prunelab.sparsity import auto_target, is_auto

    for spec in (" auto:0.5", "auto:0.5 ", "\tauto: 0.5"):
        assert report.AUTO.fullmatch(spec) and is_auto(spec)
        assert auto_target(spec, "k", {}) == 0.5
        with pytest.raises(SparsityError, match="is an auto: setting"):
            parse_sparsity(spec)
