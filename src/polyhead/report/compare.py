"""Seed groups of the runs table: mean ± std per configuration and size; differences of configurations.

A comparison is written `A vs B`, each side `key=value[,key=value...]` over flat param names, e.g.
`optim/layer_decay=1.0 vs optim/layer_decay=0.9`. Values compare as numbers when both parse as numbers
(1 == 1.0); `key=None` also matches runs that lack the param (a dropped head). Params that vary but are not
named on either side are held equal: each of their combinations is a separate row (column `held`).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from itertools import combinations

import pandas as pd

from polyhead.report.runs import X_METRIC, X_PARAM, config_label
from polyhead.report.stats import difference, mean_std

SUMMARY_COLUMNS = ["metric", "config", "train_limit", "train_examples", "mean", "std", "n", "seeds"]
DIFFERENCE_COLUMNS = [
    *("metric", "train_limit", "train_examples", "a", "b", "held", "mean_a", "mean_b", "diff"),
    *("ci_low", "ci_high"),
    *("n_a", "n_b", "method", "df"),
]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (n - 1) and n over seeds per metric, configuration and training-set size (the
    requested train_limit and the examples the metric's task trained on), smallest size first."""
    rows = []
    keys = ["metric", "config", "train_limit", "train_examples"]
    for (metric, config, limit, x), group in frame.groupby(keys, dropna=False, sort=False):
        mean, std, n = mean_std(group["value"].tolist())
        seeds = " ".join(sorted(map(str, group["seed"]), key=seed_order))
        rows.append((metric, config, limit, x, mean, std, n, seeds))
    rows.sort(key=lambda r: (r[0], r[1], size_order(r[2], r[3])))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def size_order(limit: str, x: float) -> tuple:
    """Sorts sizes by examples, then by requested limit with "all" last."""
    x = math.inf if x is None or math.isnan(x) else x
    return (x, math.inf if limit == "all" else float(limit) if _numeric(limit) else 0.0)


def _numeric(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def seed_order(seed: str) -> tuple:
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def parse_compare(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """`"a=1,b=2 vs a=3"` -> ({"a": "1", "b": "2"}, {"a": "3"})."""
    sides = re.split(r"\s+vs\s+", text.strip())
    if len(sides) != 2:
        raise ValueError(f'compare is "A vs B", got {text!r}')
    out = []
    for side in sides:
        pairs = [item.strip().split("=", 1) for item in side.split(",") if item.strip()]
        if not pairs or any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise ValueError(f"a compare side is key=value[,key=value...], got {side!r}")
        out.append({k.strip(): v.strip() for k, v in pairs})
    return out[0], out[1]


def _same(value: str | None, wanted: str) -> bool:
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == wanted  # an absent param reads as "None"


def _matching(configs: dict[str, dict], side: dict[str, str]) -> set[str]:
    return {label for label, p in configs.items() if all(_same(p.get(k), v) for k, v in side.items())}


def _check_sides(configs: dict[str, dict], a: dict, b: dict) -> tuple[set[str], set[str]]:
    if {X_PARAM, X_METRIC} & (set(a) | set(b)):
        raise ValueError(f"the training-set size is the x axis: every size is compared, not {X_PARAM}")
    labels_a, labels_b = _matching(configs, a), _matching(configs, b)
    for side, labels in ((a, labels_a), (b, labels_b)):
        if not labels:
            raise ValueError(f"no configuration has {config_label(side)}; there are: {sorted(configs)}")
    if labels_a & labels_b:
        raise ValueError(
            f"{sorted(labels_a & labels_b)} match both sides of {config_label(a)} vs {config_label(b)}"
        )
    return labels_a, labels_b


def compare(
    frame: pd.DataFrame, configs: dict[str, dict], varying: list[str], a: dict, b: dict, level: float = 0.95
) -> list[dict]:
    """mean(A) - mean(B) with a `level` interval per held params, training-set size and metric."""
    labels_a, labels_b = _check_sides(configs, a, b)
    named = set(a) | set(b)
    held = {
        label: config_label({k: p.get(k) for k in varying if k not in named}) for label, p in configs.items()
    }
    groups: tuple[dict, dict] = (defaultdict(list), defaultdict(list))
    for row in frame.itertuples():
        for side, labels in zip(groups, (labels_a, labels_b)):
            if row.config in labels:
                x = None if math.isnan(row.train_examples) else row.train_examples
                side[(row.metric, held[row.config], row.train_limit, x)].append((row.seed, row.value))
    rows = []
    order = sorted(groups[0].keys() & groups[1].keys(), key=lambda k: (k[0], k[1], size_order(k[2], k[3])))
    for key in order:
        metric, held_label, limit, x = key
        d = difference(groups[0][key], groups[1][key], level)
        held_label = "" if held_label == config_label({}) else held_label
        sides = (config_label(a), config_label(b), held_label)
        means = (d.mean_a, d.mean_b)  # over the seeds the difference is over
        values = (metric, limit, x, *sides, *means, d.diff, d.low, d.high, d.n_a, d.n_b, d.method, d.df)
        rows.append(dict(zip(DIFFERENCE_COLUMNS, values)))
    return rows


def differences(
    frame: pd.DataFrame,
    configs: dict[str, dict],
    varying: list[str],
    comparisons: list[str],
    level: float,
    partial: bool = False,
) -> pd.DataFrame:
    """The requested comparisons, or by default every pair of configurations. partial: a comparison with a
    side no configuration has yet (a study's arm not run yet) is left out instead of an error."""
    if comparisons:
        pairs = [parse_compare(c) for c in comparisons]
        if partial:
            pairs = [(a, b) for a, b in pairs if _matching(configs, a) and _matching(configs, b)]
    else:
        sides = [{k: str(configs[label].get(k)) for k in varying} for label in sorted(configs)]
        pairs = list(combinations(sides, 2))
    rows = [row for a, b in pairs for row in compare(frame, configs, varying, a, b, level)]
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
