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
