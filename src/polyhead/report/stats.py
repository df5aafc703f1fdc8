"""Seed statistics for sweeps: mean ± sample std per group, and the difference of two configurations with a
t interval over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its interval; `method` is "paired" or "welch", `df` the t degrees of freedom;
    `mean_a`, `mean_b` over the values it compared (a paired one: the seeds both sides ran)."""

    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    n_a: int
    n_b: int
    method: str
    df: float


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1; NaN for a single value) and n."""
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    return mean, statistics.stdev(values) if n > 1 else math.nan, n


def difference(
    a: Sequence[tuple[Hashable, float]], b: Sequence[tuple[Hashable, float]], level: float = 0.95
) -> Difference:
    """mean(a) - mean(b) over (seed, value) pairs, with a `level` t interval.

    Paired by seed over the seeds both sides ran (`paired_by_seed`: distinct seeds on each side, two or
    more in common): the seed fixes the training sample (`data.train_limit` draws it with `seed`), the head
    initialisation and the batch order, so much of the seed-to-seed spread is shared by both configurations
    and cancels in a[s] - b[s]. The interval is then d ± t(n-1) s_d / √n over the per-seed differences d.
    Otherwise Welch's interval, which assumes neither equal variances nor equal n: (ā - b̄) ± t(ν)
    √(s_a²/n_a + s_b²/n_b) with the Welch-Satterthwaite ν. Fewer than two values on a side give a NaN
    interval.
    """
    q = (1 + level) / 2
    if pairs := paired_by_seed(a, b):
        (mean_a, _, n), (mean_b, _, _) = mean_std([x for x, _ in pairs]), mean_std([y for _, y in pairs])
        mean, sd, _ = mean_std([x - y for x, y in pairs])
        half = scipy_stats.t.ppf(q, n - 1) * sd / math.sqrt(n)
        return Difference(mean_a, mean_b, mean, mean - half, mean + half, n, n, "paired", float(n - 1))
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = mean_std([v for _, v in a]), mean_std([v for _, v in b])
    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return Difference(mean_a, mean_b, diff, math.nan, math.nan, n_a, n_b, "welch", math.nan)
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(mean_a, mean_b, diff, diff, diff, n_a, n_b, "welch", math.inf)
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = scipy_stats.t.ppf(q, df) * se
    return Difference(mean_a, mean_b, diff, diff - half, diff + half, n_a, n_b, "welch", df)


def paired_by_seed(
    a: Sequence[tuple[Hashable, float]], b: Sequence[tuple[Hashable, float]]
) -> list[tuple[float, float]] | None:
    """(a's value, b's value) of each seed both sides ran, in a's order, where a paired comparison can be
    made: distinct seeds on each side and two or more in common (a study that gives one arm more seeds than
    another still pairs them by seed). None otherwise: Welch over both sides whole."""
    seeds_a, seeds_b = [s for s, _ in a], [s for s, _ in b]
    if len(set(seeds_a)) < len(a) or len(set(seeds_b)) < len(b) or len(set(seeds_a) & set(seeds_b)) < 2:
        return None
    by_seed = dict(b)
    return [(v, by_seed[s]) for s, v in a if s in by_seed]
