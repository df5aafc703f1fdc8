"""polyhead.report on synthetic runs in a real sqlite MLflow store: known values in, same statistics out."""

import statistics

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from polyhead.report import main
from polyhead.report.compare import parse_compare
from polyhead.report.stats import difference, paired_by_seed

SWEEP = "sweep-7"
SIZES = (100, 500)
# test/tagger_acc per (layer_decay, train size, seed); 0.8 ran on other seeds, so it pairs with nothing.
TAGGER = {
    ("1.0", 100): {1: 0.70, 2: 0.74, 3: 0.69},
    ("1.0", 500): {1: 0.85, 2: 0.86, 3: 0.88},
    ("0.9", 100): {1: 0.73, 2: 0.75, 3: 0.74},
    ("0.9", 500): {1: 0.87, 2: 0.90, 3: 0.88},
    ("0.8", 100): {4: 0.60, 5: 0.66},
    ("0.8", 500): {4: 0.80, 5: 0.83},
}


# The throughput callback's `_target_` as runs logged it before its module moved, and after.
THROUGHPUT = (
    "polyhead.callbacks.throughput.WordThroughput",
    "polyhead.training.callbacks.throughput.WordThroughput",
)


def ner_f1(decay: str, size: int, seed: int) -> float:
    return round(0.3 + size / 1000 + float(decay) / 10 + seed / 100, 4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (the reports only read it, or add report runs no query selects)."""
    tmp_path = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(uri)
    artifacts = str(tmp_path / "mlruns" / "artifacts")
    exp, other = (
        client.create_experiment(name, artifact_location=artifacts) for name in ("polyhead", "other")
    )
    start = iter(range(1_000_000, 2_000_000, 1000))

    def add(decay, size, seed, tagger, status="FINISHED", sweep=SWEEP, experiment=exp):
        rid = client.create_run(experiment, start_time=next(start), tags={"sweep_id": sweep}).info.run_id
        params = {"optim/layer_decay": decay, "optim/lr": "0.0001", "data/train_limit": str(size)}
        params |= {"seed": str(seed), "data/seed": str(seed), "paths/output_dir": f"/o/{rid}"}
        params["callbacks/throughput/_target_"] = THROUGHPUT[seed % 2]  # logged before and after it moved
        metrics = {"test/tagger_acc": tagger, "test/ner_f1": ner_f1(decay, size, seed)}
        metrics |= {"data/train_examples": size, "val/tagger_acc": 0.5}  # not test metrics: not reported
        client.log_batch(
            rid,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        client.set_terminated(rid, status)

    add("1.0", 100, 1, 0.01)  # an earlier attempt at the same configuration and seed: the rerun counts
    for (decay, size), by_seed in TAGGER.items():
        for seed, value in by_seed.items():
            add(decay, size, seed, value)
    add("1.0", 100, 4, 0.99, status="FAILED")
    add("1.0", 100, 5, 0.99, status="KILLED")
    add("1.0", 100, 6, 0.99, sweep="another-sweep", experiment=other)
    return tmp_path, uri, client


def read_csv(path):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def test_report_mean_std_n_over_seeds_of_finished_runs(store, tmp_path):
    _, uri, _ = store
    out = main([f"sweep_id={SWEEP}", f"tracking_uri={uri}", f"out={tmp_path / 'report'}", "log=false"])
    summary = read_csv(out / "summary.csv")
    assert set(summary["metric"]) == {"test/tagger_acc", "test/ner_f1"}
    assert set(summary["config"]) == {f"optim/layer_decay={d}" for d in ("1.0", "0.9", "0.8")}
    for (decay, size), by_seed in TAGGER.items():
        row = summary[(summary.config == f"optim/layer_decay={decay}") & (summary.train_examples == size)]
        tagger = row[row.metric == "test/tagger_acc"].iloc[0]
        assert tagger["mean"] == pytest.approx(statistics.fmean(by_seed.values()))
        assert tagger["std"] == pytest.approx(np.std(list(by_seed.values()), ddof=1))
        assert tagger["n"] == len(by_seed)
        assert tagger["seeds"] == " ".join(map(str, by_seed))
        ner = row[row.metric == "test/ner_f1"].iloc[0]
        assert ner["mean"] == pytest.approx(statistics.fmean(ner_f1(decay, size, s) for s in by_seed))
    runs = read_csv(out / "runs.csv")
    assert len(runs) == 2 * sum(
        len(v) for v in TAGGER.values()
    )  # no failed, killed, other-sweep or stale run
    for name in ("summary.md", "differences.md", "differences.csv"):
        assert (out / name).stat().st_size > 0
    assert "| optim/layer_decay=0.9 | 500 | 0.8833 ± 0.0153 | 3 | 1 2 3 |" in (out / "summary.md").read_text()
    for metric in ("test_tagger_acc", "test_ner_f1"):
        assert (out / f"learning_curve_{metric}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_runs_from_before_a_module_moved_are_the_same_configuration(store, tmp_path):
    _, uri, _ = store
    out = main([f"sweep_id={SWEEP}", f"tracking_uri={uri}", f"out={tmp_path / 'report'}", "log=false"])
    summary = read_csv(out / "summary.csv")
    assert set(summary["config"]) == {f"optim/layer_decay={d}" for d in ("1.0", "0.9", "0.8")}
    assert set(summary[summary.config == "optim/layer_decay=0.9"]["n"]) == {3}  # seeds 1 and 3 old, 2 new


def test_report_difference_paired_by_seed_or_welch(store, tmp_path):
    _, uri, _ = store
    compares = [
        "optim/layer_decay=0.9 vs optim/layer_decay=1",
        "optim/layer_decay=0.8 vs optim/layer_decay=1.0",
    ]
    argv = [f"sweep_id={SWEEP}", f"tracking_uri={uri}", f"out={tmp_path / 'r'}", "log=false"]
    out = main([*argv, *(f"compare={c}" for c in compares)])
    diffs = read_csv(out / "differences.csv")
    diffs = diffs[diffs.metric == "test/tagger_acc"]
    assert len(diffs) == 4  # two comparisons at two sizes
    for (a, b, method), size in [(("0.9", "1.0", "paired"), s) for s in SIZES] + [
        (("0.8", "1.0", "welch"), s) for s in SIZES
    ]:
        va, vb = TAGGER[(a, size)], TAGGER[(b, size)]
        row = diffs[(diffs.a == f"optim/layer_decay={a}") & (diffs.train_examples == size)].iloc[0]
        if method == "paired":
            test = stats.ttest_rel(list(va.values()), [vb[s] for s in va])
        else:
            test = stats.ttest_ind(list(va.values()), list(vb.values()), equal_var=False)
        low, high = test.confidence_interval(0.95)
        assert row["method"] == method
        assert row["diff"] == pytest.approx(statistics.fmean(va.values()) - statistics.fmean(vb.values()))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert (row["n_a"], row["n_b"]) == (len(va), len(vb))
        assert row["held"] != row["held"]  # NaN: nothing else varies


def test_report_default_compares_every_pair_and_logs_report_run(store, tmp_path):
    _, uri, client = store
    out = main([f"sweep_id={SWEEP}", f"tracking_uri={uri}", f"out={tmp_path / 'r'}"])
    diffs = read_csv(out / "differences.csv")
    assert len(diffs) == 3 * len(SIZES) * 2  # 3 pairs of configurations x sizes x metrics
    (report,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.report_of = '{SWEEP}'"
    )
    assert report.info.run_name == f"report {SWEEP}" and report.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(report.info.run_id)}
    assert {"summary.csv", "summary.md", "differences.csv", "differences.md", "runs.csv"} <= logged
    assert {"learning_curve_test_tagger_acc.png", "learning_curve_test_ner_f1.png"} <= logged
    # a report over the whole experiment holds the same runs: the report run above is left out
    again = main(["experiment=polyhead", f"tracking_uri={uri}", f"out={tmp_path / 'r2'}", "log=false"])
    assert read_csv(again / "summary.csv").equals(read_csv(out / "summary.csv"))


@pytest.mark.parametrize(
    ("compare", "error"),
    [
        ("optim/layer_decay=0.5 vs optim/layer_decay=1.0", "no configuration has optim/layer_decay=0.5"),
        ("optim/layer_decay=0.9", 'compare is "A vs B"'),
        ("optim/lr=0.0001 vs optim/layer_decay=0.9", "match both sides"),
        ("data/train_limit=100 vs data/train_limit=500", "x axis"),
    ],
)
def test_report_bad_comparison_is_an_error(store, tmp_path, compare, error):
    _, uri, _ = store
    with pytest.raises(ValueError, match=error):
        main([f"sweep_id={SWEEP}", f"tracking_uri={uri}", f"out={tmp_path / 'r'}", f"compare={compare}"])


def test_report_unknown_sweep_is_an_error(store, tmp_path):
    _, uri, _ = store
    with pytest.raises(ValueError, match="no FINISHED runs"):
        main(["sweep_id=nope", f"tracking_uri={uri}", f"out={tmp_path / 'r'}"])


def test_report_parse_compare_sides():
    assert parse_compare("a/b=1,c=x vs a/b=2") == ({"a/b": "1", "c": "x"}, {"a/b": "2"})


def test_report_difference_pairs_the_seeds_both_sides_ran():
    more = [(1, 0.90), (2, 0.80), (3, 0.85), (4, 0.95), (5, 0.70)]  # an arm given seeds 4 and 5 too
    fewer = [(3, 0.80), (1, 0.88), (2, 0.79)]
    d = difference(more, fewer)
    test = stats.ttest_rel([0.90, 0.80, 0.85], [0.88, 0.79, 0.80])
    assert d.method == "paired" and (d.n_a, d.n_b) == (3, 3)
    assert d.diff == pytest.approx((0.02 + 0.01 + 0.05) / 3)
    assert (d.low, d.high) == pytest.approx(test.confidence_interval(0.95))
    assert paired_by_seed(more, fewer) == [(0.90, 0.88), (0.80, 0.79), (0.85, 0.80)]
    # one seed in common, or a seed twice on a side: nothing to pair, Welch over everything
    assert difference(more, [(5, 0.6), (6, 0.7)]).method == "welch"
    assert paired_by_seed(more, [(1, 0.8), (1, 0.9), (2, 0.7)]) is None


def test_report_difference_edge_cases():
    one = difference([(1, 0.5)], [(1, 0.4), (2, 0.6)])
    assert one.diff == pytest.approx(0.0) and np.isnan(one.low) and one.method == "welch"
    flat = difference([(1, 0.5), (2, 0.5)], [(3, 0.4), (4, 0.4)])
    assert (flat.low, flat.high) == pytest.approx((0.1, 0.1))
