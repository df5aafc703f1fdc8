"""The study of issue 13 as scripts/study.py plans it from conf/study/sharing.yaml: arms x sizes x seeds, the
budget rule, heads kept per arm (a head added later stays out), and what one planned multirun composes to."""

import math
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, compose_config

from polyhead.study.run import (
    Cell,
    budget,
    cell_overrides,
    compose_study,
    per_seed,
    pin_precision,
    plan,
    remaining,
    run_cells,
    run_study,
)

EXTRA_HEAD = "+model.heads.later={_target_: polyhead.models.heads.tagger.TokenTaggingHead, _partial_: true}"


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    return plan(compose_study(PROJECT_ROOT, "sharing", [EXTRA_HEAD]))


@pytest.mark.parametrize(
    ("size", "batch", "epochs", "val_every"),
    [
        (100, 32, 80, 10),
        (500, 32, 16, 2),
        (2000, 32, 5, 1),
        (None, 32, 5, 1),
        (50, 32, 80, 10),
        (300, 16, 14, 1),
    ],
)
def test_study_plan_budget_rule(size, batch, epochs, val_every):
    rule = {"min_steps": 250, "min_epochs": 5, "max_epochs": 80, "validations": 8}
    assert budget(size, batch, **rule) == (epochs, val_every)
    if size:  # at least min_steps optimiser steps of `size` examples, unless capped by max_epochs
        assert epochs * math.ceil(size / batch) >= 250 or epochs == 80


def test_study_plan_has_every_arm_size_and_seed(cells):
    assert [c.name for c in cells[:5]] == [
        "multitask-n100",
        "flat-n100",
        "single-tagger-n100",
        "single-ner-n100",
        "single-textcat-n100",
    ]
    firsts = [c for c in cells if c.arm == "multitask"]
    assert [(c.size, c.seeds, c.epochs, c.val_every) for c in firsts] == [
        (100, (1, 2, 3), 80, 10),
        (500, (1, 2, 3), 16, 2),
        (2000, (1, 2, 3), 5, 1),
        (None, (1,), 5, 1),
    ]
    # 10 models per size and seed (multitask, flat, 3 single, balanced, born_again, born_again_balanced,
    # born_again_mean, weighted); the control at 500 only; born_again_long and its 3 single_long, and
    # born_again_ensemble, at 500 and 2,000; born_again_ensemble_last at 100, 500 and 2,000; its control
    # single_ensemble_last, 3 models, at 500
    assert sum(len(c.seeds) for c in cells) == 10 * 3 * 3 + 10 * 1 + 3 * 3 + 5 * 3 * 2 + 3 * 3 + 3 * 3
    assert {c.size for c in cells if c.arm == "single_taught"} == {500}
    longer = [(c.arm, c.size, c.epochs, c.val_every) for c in cells if c.arm.endswith("_long")]
    assert set(longer) == {(arm, 500, 24, 3) for arm in ("born_again_long", "single_long")} | {
        (arm, 2000, 8, 1) for arm in ("born_again_long", "single_long")
    }  # 1.5 x 16 and 1.5 x 5 epochs, rounded up


def test_study_plan_born_again_cells_take_one_seed_and_wait_for_their_teachers(cells):
    from polyhead.study.run import waits_for

    taught = [c for c in cells if c.arm == "born_again" and c.size == 500]
    assert [(c.name, c.seeds, c.teachers_from) for c in taught] == [
        (f"born_again-n500-s{s}", (s,), "single") for s in (1, 2, 3)
    ]
    singles = [c for c in cells if c.arm == "single"]
    assert waits_for(taught[0], singles) and not waits_for(taught[0], [c for c in singles if c.size != 500])
    taught_arms = ("born_again", "born_again_balanced", "born_again_mean", "single_taught", "born_again_long")
    taught_arms += ("born_again_ensemble", "born_again_ensemble_last", "single_ensemble_last")
    assert not any(waits_for(c, cells) for c in cells if c.arm not in taught_arms)


def test_study_plan_arms_keep_their_heads_and_drop_any_other(cells):
    """A head the experiment has besides tagger, ner and textcat (here `later`; EWT's parser) is dropped."""
    heads = list(compose_study(PROJECT_ROOT, "sharing", [EXTRA_HEAD]).model.heads)
    assert {"tagger", "ner", "textcat", "later"} <= set(heads)
    drops = {c.name: [o for o in c.overrides if o.startswith("~")] for c in cells}
    others = [f"~model.heads.{h}" for h in heads if h not in ("tagger", "ner", "textcat")]
    assert drops["multitask-n100"] == drops["flat-n2000"] == others
    assert drops["single-ner-n500"] == [f"~model.heads.{h}" for h in heads if h != "ner"]
    sizes = (100, 500, 2000, "all")
    taught = [(n, s) for n in sizes[:3] for s in (1, 2, 3)] + [("all", 1)]  # a taught arm: one cell per seed
    assert (
        {c.name: c.overrides[0] for c in cells if not c.overrides[0].startswith("~")}
        == {
            **{f"flat-n{n}": "optim.layer_decay=1.0" for n in sizes},
            **{f"balanced-n{n}": "model.heads.textcat.pooling=mean" for n in sizes},  # study.balance
            **{f"born_again_balanced-n{n}-s{s}": "model.heads.textcat.pooling=mean" for n, s in taught},
            **{f"born_again_mean-n{n}-s{s}": "model.heads.textcat.pooling=mean" for n, s in taught},
            **{f"born_again_ensemble-n{n}-s{s}": "model.heads.textcat.pooling=mean" for n, s in taught[3:9]},
            **{
                f"born_again_ensemble_last-n{n}-s{s}": "model.heads.textcat.pooling=mean"
                for n, s in taught[:9]
            },
            **{
                f"single_ensemble_last-{t}-n500-s{s}": "model.heads.textcat.pooling=mean"
                for t in ("tagger", "ner", "textcat")
                for s in (1, 2, 3)
            },
            **{f"weighted-n{n}": "model.loss_weights.textcat=0.25" for n in sizes},  # study.weights
        }
    )


def test_study_plan_cell_composes_to_its_heads_data_and_budget(cells, tmp_path):
    cell = next(c for c in cells if c.name == "single-ner-n500")
    arguments = [
        a for a in cell.arguments("sharing", "s-1", tmp_path) if not a.startswith(("seed=", "hydra."))
    ]
    cfg = compose_config("train", tmp_path, [EXTRA_HEAD, *arguments, "seed=2"], tmp_path / "out")
    assert list(cfg.model.heads) == ["ner"] and list(cfg.data.tasks) == ["ner"]
    assert (cfg.data.train_limit, cfg.trainer.max_epochs, cfg.trainer.check_val_every_n_epoch) == (500, 16, 2)
    assert cfg.optim.layer_decay == 0.9 and cfg.trainer.val_check_interval == 1.0
    assert cfg.logger.mlflow.tags.study_id == "s-1" and cfg.study.arm == "single"
    assert cfg.data.train[0].path.endswith("en_ewt-ud-train.conllu")  # experiment=ewt
    assert cfg.export.enabled is False and cfg.callbacks.checkpoint.save_last is False
    control = next(c for c in cells if c.name == "single_ensemble_last-tagger-n500-s2")
    assert control.teacher_seeds == (2, 3)
    arguments = [a for a in control.arguments("sharing", "s-1", tmp_path) if not a.startswith("hydra.")]
    taught = compose_config("train", tmp_path, [EXTRA_HEAD, *arguments], tmp_path / "out")
    assert list(taught.model.heads) == ["tagger"] and taught.callbacks.checkpoint.monitor is None
    multitask = compose_config("train", tmp_path, ["study=sharing"], tmp_path / "out")
    assert cfg.model.heads.ner == multitask.model.heads.ner  # the same head as in the multitask model


def test_study_plan_resume_runs_only_seeds_without_a_finished_run(cells):
    cell = next(c for c in cells if c.name == "single-ner-n100")
    done = {
        ("single", ("ner",), "100", "1"),
        ("single", ("tagger",), "100", "2"),
        ("multitask", ("ner",), "100", "3"),
    }
    assert remaining(cell, done).seeds == (2, 3)
    assert remaining(cell, done | {("single", ("ner",), "100", s) for s in "23"}) is None


def test_study_plan_arm_naming_a_missing_head_is_an_error():
    cfg = compose_study(PROJECT_ROOT, "sharing", ["~model.heads.ner"])
    with pytest.raises(ValueError, match=r"study arm multitask names tasks \['ner'\]"):
        plan(cfg)


def test_study_plan_size_with_seeds_of_its_own_runs_every_arm_there_over_them():
    more = plan(compose_study(PROJECT_ROOT, "sharing", ["+study.seeds_at.2000=[1,2,3,4,5,6]"]))
    seeds = {(c.arm, c.size): c.seeds for c in more if not c.per_seed}
    assert seeds[("single", 2000)] == seeds[("multitask", 2000)] == (1, 2, 3, 4, 5, 6)
    assert seeds[("single", 500)] == (1, 2, 3) and seeds[("multitask", None)] == (1,)  # all_seeds as before
    taught = [c.seeds for c in more if c.arm == "born_again" and c.size == 2000]
    assert taught == [(s,) for s in range(1, 7)]  # one cell per seed, each waiting for its teachers
    with pytest.raises(ValueError, match=r"study.seeds_at names sizes \[50\] that study.sizes"):
        plan(compose_study(PROJECT_ROOT, "sharing", ["+study.seeds_at.50=[1]"]))


def test_study_plan_ensemble_cells_are_taught_by_their_seed_and_the_next():
    more = plan(compose_study(PROJECT_ROOT, "sharing", ["+study.seeds_at.2000=[1,2,3,4,5,6]"]))
    taught = {(c.size, c.seeds): c.teacher_seeds for c in more if c.arm == "born_again_ensemble"}
    assert taught == {
        **{(500, (s,)): (s, s % 3 + 1) for s in (1, 2, 3)},
        **{(2000, (s,)): (s, s % 6 + 1) for s in range(1, 7)},
    }
    assert {c.teacher_seeds for c in more if c.arm == "born_again" and c.size == 500} == {(1,), (2,), (3,)}
    with pytest.raises(ValueError, match=r"born_again_ensemble: teacher_seeds=4 must be between 1 and the 3"):
        plan(compose_study(PROJECT_ROOT, "sharing", ["study.arms.born_again_ensemble.teacher_seeds=4"]))


def test_study_plan_teacher_runs_are_the_finished_runs_of_the_teachers_seeds(tmp_path):
    """In a real MLflow store: the teachers of each task in the order of the cell's teacher seeds, the
    newest finished and tested run of a seed; a seed without one is named in the error."""
    from mlflow.tracking import MlflowClient

    from polyhead.study.run import teacher_runs

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))

    def single(task, seed, status="FINISHED", tested=True, limit="500"):
        params = {"study/arm": "single", "seed": str(seed), "data/train_limit": limit}
        run = client.create_run(experiment, tags={"study_id": "s"})
        for key, value in {**params, f"model/heads/{task}/_target_": "x"}.items():
            client.log_param(run.info.run_id, key, value)
        if tested:
            client.log_metric(run.info.run_id, f"test/{task}_score", 0.5)
        client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    first = {seed: single("tagger", seed) for seed in (1, 2, 3)}
    newer = single("tagger", 3)
    single("tagger", 1, status="FAILED")
    single("tagger", 2, tested=False)
    single("tagger", 2, limit="2000")
    ner = {seed: single("ner", seed) for seed in (3, 1)}
    cell = Cell("born_again_ensemble", ("tagger", "ner"), 500, (3,), 1, 1, (), "single", True, (3, 1))
    assert teacher_runs(client, "s", cell) == {"tagger": [newer, first[1]], "ner": [ner[3], ner[1]]}
    own = replace(cell, tasks=("tagger",), seeds=(2,), teacher_seeds=())
    assert teacher_runs(client, "s", own) == {"tagger": [first[2]]}
    with pytest.raises(ValueError, match=r"no FINISHED single run at this size for ner \(seed 2\)$"):
        teacher_runs(client, "s", replace(cell, seeds=(2,), teacher_seeds=(2, 3)))


def test_study_plan_resume_trains_in_the_precision_of_its_finished_runs():
    assert pin_precision({"32-true"}, ["seed=1"]) == ["seed=1", "trainer.precision=32-true"]
    assert pin_precision({"32-true"}, ["trainer.precision=bf16-mixed"]) == ["trainer.precision=bf16-mixed"]
    assert pin_precision(set(), ["seed=1"]) == ["seed=1"]  # nothing finished yet: the CPU's best
    with pytest.raises(ValueError, match=r"\['32-true', 'bf16-mixed'\]: resume it with an explicit"):
        pin_precision({"bf16-mixed", "32-true"}, [])


def test_study_plan_jobs_run_each_seed_as_its_own_cell_with_its_share_of_threads(cells):
    many = cells[0]
    split = per_seed([many, cells[1]])
    assert [(c.name, c.seeds) for c in split[:4]] == [
        ("multitask-n100-s1", (1,)),
        ("multitask-n100-s2", (2,)),
        ("multitask-n100-s3", (3,)),
        ("flat-n100-s1", (1,)),
    ]
    assert all(c.arguments("sharing", "x", Path("s"))[-1].endswith(f"x-{c.name}") for c in split)
    assert per_seed(split) == split and many.name == "multitask-n100"  # jobs=1 keeps the multirun
    assert cell_overrides(jobs=3, cores=2) == ["threads=1"]
    assert cell_overrides(jobs=2, cores=8) == ["threads=4"]


FAKE_TRAIN = """import sys, time
from pathlib import Path
name = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("name="))
log = Path(__file__).parent / "ran.txt"
with log.open("a") as f:
    f.write(f"start {name} {time.time()}\\n")
time.sleep(float(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("sleep="))))
with log.open("a") as f:
    f.write(f"end {name} {time.time()}\\n")
sys.exit(3 if name == "bad" else 0)
"""


def test_study_plan_runs_cells_side_by_side_within_jobs_in_order(tmp_path):
    """A stand-in train.py records when each cell ran: jobs=2 starts the cells in order, the next as soon as
    one ends, two at once and never more; a failing cell is reported and the others still run."""
    (tmp_path / "train.py").write_text(FAKE_TRAIN)
    sleeps = {"long": 3.0, "a": 0.3, "b": 0.3, "bad": 0.3, "c": 0.3}
    cells = [Cell("multitask", ("tagger",), 100, (1,), 1, 1, (), per_seed=True) for _ in sleeps]
    arguments = [[f"name={name}", f"sleep={sleep}"] for name, sleep in sleeps.items()]
    logs = [tmp_path / "logs" / f"{name}.log" for name in sleeps]
    assert run_cells(tmp_path, cells, arguments, logs, jobs=2) == ["multitask-tagger-n100-s1"]  # "bad"
    events = sorted(
        (float(at), event, name)
        for event, name, at in map(str.split, (tmp_path / "ran.txt").read_text().splitlines())
    )
    starts = [name for _, event, name in events if event == "start"]
    running, most = 0, 0
    for _, event, _ in events:
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert set(starts[:2]) == {"long", "a"} and starts[2:] == ["b", "bad", "c"] and most == 2  # two at once
    assert events.index(next(e for e in events if e[1:] == ("start", "a"))) < events.index(
        next(e for e in events if e[1:] == ("end", "long"))
    )  # the short cells run beside the long one
    assert all(log.is_file() for log in logs)


def test_study_plan_born_again_cell_starts_after_its_teachers_with_their_run_ids(tmp_path):
    """The born-again cell is queued first but starts once the teachers' cell has ended, with arguments
    made when it starts; a cell whose teachers cannot be found is reported failed and not run."""
    (tmp_path / "train.py").write_text(FAKE_TRAIN)
    teacher = Cell("single", ("tagger",), 100, (1,), 1, 1, ())
    student = Cell("born_again", ("tagger",), 100, (1,), 1, 1, (), "single", per_seed=True)
    orphan = Cell("born_again", ("tagger",), 500, (1,), 1, 1, (), "single", per_seed=True)
    made = []

    def taught(cell):
        ran = tmp_path / "ran.txt"
        made.append((cell.name, ran.read_text().count("end") if ran.exists() else 0))
        if cell.size == 500:
            raise ValueError(f"{cell.name}: no FINISHED single run")
        return [f"name={cell.name}", "sleep=0.1"]

    logs = [tmp_path / f"{i}.log" for i in range(3)]
    args = [taught, [f"name={teacher.name}", "sleep=1"], taught]
    failed = run_cells(tmp_path, [student, teacher, orphan], args, logs, jobs=2)
    assert failed == ["born_again-tagger-n500-s1"]
    assert ("born_again-tagger-n100-s1", 1) in made  # the teacher had ended when its student started
    events = (tmp_path / "ran.txt").read_text().split()
    assert events.index("single-tagger-n100") < events.index("born_again-tagger-n100-s1")


def test_study_plan_jobs_leave_the_launcher_to_the_study():
    with pytest.raises(ValueError, match="--jobs 2 runs one seed per process: leave out threads=1"):
        run_study(PROJECT_ROOT, "sharing", ["threads=1"], {"jobs": 2, "dry_run": True})


def test_study_plan_arm_epochs_must_be_positive():
    cfg = compose_study(PROJECT_ROOT, "sharing", ["study.arms.single_long.epochs=0"])
    with pytest.raises(ValueError, match="study arm single_long: epochs=0.0 must be a positive multiple"):
        plan(cfg)


def test_study_plan_compares_only_arms_the_study_runs():
    from polyhead.study.run import comparisons

    toy = compose_study(PROJECT_ROOT, "sharing", ["study.sizes=[40,100]", "study.all_seeds=[]"])
    kept = comparisons(toy)  # born_again_long, single_long and single_taught run at 500 / 2,000 only
    assert "study/arm=born_again_long vs study/arm=single_long" not in kept
    assert "study/arm=single_taught vs study/arm=single" not in kept
    assert "study/arm=multitask vs study/arm=single" in kept
    full = compose_study(PROJECT_ROOT, "sharing", [])
    assert comparisons(full) == list(full.study.compare)


def test_study_plan_confirmation_runs_only_the_three_arms_its_findings_rest_on():
    """conf/study/sharing_confirm.yaml: sharing.yaml's arms and settings, run afresh for single, the
    ensemble-taught multitask model and its control; six seeds at 500 and 2,000, three at 100 and "all"."""
    from collections import Counter

    from polyhead.study.run import comparisons

    cfg = compose_study(PROJECT_ROOT, "sharing_confirm", [])
    confirm = plan(cfg)
    runs = Counter()
    for cell in confirm:
        runs[cell.arm, cell.size] += len(cell.seeds)
    assert runs == {
        ("single", 100): 9, ("single", 500): 18, ("single", 2000): 18, ("single", None): 9,
        ("born_again_ensemble_last", 100): 3, ("born_again_ensemble_last", 500): 6,
        ("born_again_ensemble_last", 2000): 6, ("born_again_ensemble_last", None): 3,
        ("single_ensemble_last", 500): 18, ("single_ensemble_last", 2000): 18,
    }  # fmt: skip
    sharing = compose_study(PROJECT_ROOT, "sharing", [])
    for arm in ("single", "born_again_ensemble_last", "single_ensemble_last"):
        settings = {k: v for k, v in cfg.study.arms[arm].items() if k != "sizes"}
        assert settings == {k: v for k, v in sharing.study.arms[arm].items() if k != "sizes"}
    assert comparisons(cfg) == list(cfg.study.compare) and len(cfg.study.compare) == 3
    taught = next(c for c in confirm if c.name == "born_again_ensemble_last-nall-s3")
    assert taught.teacher_seeds == (3, 1)  # its seed's and the next seed's single runs
