import math

import pytest
import torch

from prunelab.data import Loader, load_digits
from prunelab.engine import Recipe, evaluate, fit, lr_at


def test_lr_warms_up_linearly_then_follows_a_cosine():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(99, 100, 10, 1.0) < 1e-3


def test_fit_learns_and_evaluate_counts_top1():
    torch.manual_seed(0)
    s = load_digits()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    train = Loader(s.x_train, s.y_train, s.mean, s.std, 64, shuffle=True, seed=0)
    test = Loader(s.x_test, s.y_test, s.mean, s.std, 500)
    seen = []
    final = fit(model, train, test, Recipe(epochs=3, lr=0.1), torch.device("cpu"), lambda e, m: seen.append(e))
    assert seen == [0, 1, 2] and final["top1"] > 85
    logits = model(next(iter(test))[0])
    assert evaluate(model, test, torch.device("cpu"))["top1"] == pytest.approx(
        100 * (logits.argmax(1) == s.y_test).float().mean().item())


def test_non_positive_epochs_are_refused():
    with pytest.raises(ValueError, match="epochs"):
        fit(torch.nn.Linear(1, 1), [], [], Recipe(epochs=0, lr=0.1), torch.device("cpu"))
