"""Whether two pruned networks differ in top-1, how sure that is, and what the design could see.

Two networks A and B evaluated on the same n test images give per-image correctness
a, b in {0, 1}^n. Their top-1 difference in points is 100 * mean(a - b); only the discordant
images move it: n10 that A gets right and B wrong, n01 the other way round, so the difference is
100 * (n10 - n01) / n. Two intervals over two units:

- over test images (one network per side): Newcombe's square-and-add interval for paired
  proportions (Newcombe 1998, method 10; Fagerland, Lydersen & Laake 2013 recommend it), from
  the two Wilson score intervals and the correlation phi of the 2x2 table, and McNemar's exact
  p-value (a binomial test of n10 against n10 + n01 at 1/2). Unlike the t interval over images it
  stays honest in small samples and when the networks agree on every image. It holds only which
  test images were drawn, not another training run.
- over replicates (independently trained baselines, or fine-tuning seeds of one baseline): the
  paired t interval mean(d) +- t_{0.975, k-1} sd(d) / sqrt(k) over the k per-replicate differences
  d_j (scipy.stats.ttest_rel), which holds the training noise of that unit. Fewer than two pairs,
  or the same difference in every pair (no spread: a zero-width interval would be a pretence),
  give no interval and no verdict.

A declared family of m contrasts gets verdicts from Holm's step-down adjustment of their
p-values (holm); every other difference is an estimate, its interval unadjusted. What the
design could detect: the smallest true difference a two-sided paired t test at level alpha finds
with 80% power, from k pairs and the observed spread sd(d) (detectable, exact through the
noncentral t distribution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """Top-1 of A minus top-1 of B, in points, with its 95% interval and two-sided p-value over
    `n` paired `unit`s. low, high and p are nan where there is no interval (see `missing`)."""
    mean: float
    low: float
    high: float
    n: int
    unit: str  # "baselines", "seeds" or "test images"
    p: float = float("nan")
    sd: float = float("nan")  # over replicates: the sample standard deviation of the per-pair differences

    @property
    def missing(self) -> str | None:
        """Why there is no interval, or None."""
        if self.n < 2:
            return "no interval: one pair"
        if math.isnan(self.low):
            return "no interval: no spread"
        return None

    def verdict(self, p_adjusted: float | None = None, alpha: float = 1 - CONFIDENCE) -> str:
        """For a declared contrast: which side is better at level alpha, judged on p_adjusted
        (Holm's) when given, else on the interval; "not detected" otherwise."""
        if self.missing:
            return self.missing
        significant = p_adjusted < alpha if p_adjusted is not None else not (self.low <= 0.0 <= self.high)
        return ("A better" if self.mean > 0 else "B better") if significant else "not detected"


def over_images(a: np.ndarray, b: np.ndarray) -> Difference:
    """A's top-1 minus B's, paired by test image; a, b: (N,) bool correctness. Newcombe's
    square-and-add interval (method 10) and McNemar's exact p-value."""
    from scipy import stats

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} test images: not the same test set")
    n = len(a)
    n11, n10 = int((a & b).sum()), int((a & ~b).sum())  # both right; A right, B wrong
    n01, n00 = int((~a & b).sum()), int((~a & ~b).sum())  # A wrong, B right; both wrong
    if n < 2:
        return Difference(100.0 * (n10 - n01) / max(n, 1), float("nan"), float("nan"), n, "test images")
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n  # A's and B's top-1 as fractions
    (l1, u1), (l2, u2) = _wilson(n11 + n10, n), _wilson(n11 + n01, n)
    # phi: the 2x2 table's correlation, its numerator n11 n00 - n10 n01 shrunk by n/2 towards 0
    # when positive (Newcombe's method 10 as published), 0 where a margin is empty
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    cross = n11 * n00 - n10 * n01
    cross = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = cross / math.sqrt(margins) if margins else 0.0
    delta = p1 - p2
    low = delta - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = delta + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    p = stats.binomtest(n10, n10 + n01, 0.5).pvalue if n10 + n01 else 1.0  # McNemar, exact
    return Difference(100.0 * delta, 100.0 * max(low, -1.0), 100.0 * min(high, 1.0), n, "test images", float(p))


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson's score interval for a proportion (statsmodels' proportion_confint(method="wilson"))."""
    from scipy import stats

    z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def over_replicates(a: list[float], b: list[float], unit: str = "baselines") -> Difference:
    """A's top-1 minus B's (both in %), paired by replicate (a baseline, or a fine-tuning seed):
    the paired t interval and p-value with len(a) - 1 degrees of freedom."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} {unit}: pair them by {unit.removesuffix('s')}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)  # (k,) per-replicate differences
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2 or np.all(d == d[0]):  # one pair, or no spread: no interval (scipy would give nan)
        return Difference(mean, float("nan"), float("nan"), len(d), unit)
    from scipy import stats  # here: a stage that only evaluates need not import it

    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(CONFIDENCE)
    return Difference(mean, float(ci.low), float(ci.high), len(d), unit, float(test.pvalue), float(d.std(ddof=1)))


def over_seeds(a: list[float], b: list[float]) -> Difference:
    """A's top-1 minus B's (both in %), paired by fine-tuning seed."""
    return over_replicates(a, b, "seeds")


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: sorted ascending, the i-th smallest
    (i = 0..m-1) becomes max over j <= i of min(1, (m - j) p_(j)). Rejecting where adjusted < alpha
    keeps the family-wise error rate at alpha for any dependence between the contrasts. nan (a
    contrast with no interval) stays nan and does not count in m: it cannot be rejected."""
    valid = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m, adjusted, running = len(valid), [float("nan")] * len(pvalues), 0.0
    for rank, i in enumerate(sorted(valid, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def detectable(sd: float, k: int, alpha: float = 1 - CONFIDENCE, power: float = 0.8) -> float:
    """The smallest true mean difference (in sd's units) that a two-sided paired t test at level
    alpha on k pairs detects with the given power, when the pairs' differences have standard
    deviation sd: solves P(|T| > t_{1-alpha/2, k-1}) = power for T ~ noncentral t(k - 1,
    delta sqrt(k) / sd). nan below two pairs or without spread."""
    if k < 2 or not sd > 0:
        return float("nan")
    from scipy import optimize, stats

    df, crit = k - 1, stats.t.ppf(1 - alpha / 2, k - 1)

    def shortfall(delta: float) -> float:
        nc = delta * math.sqrt(k) / sd
        # the lower tail P(T < -crit) as the upper tail of -T (scipy's nct.cdf far in a tail can be nan)
        return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc) - power

    high = sd
    while shortfall(high) < 0:  # power grows with delta: widen until it is reached
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10 * sd))
