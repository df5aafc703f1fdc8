"""Born-again multitask training (Clark et al. 2019): a train.py run whose tasks also learn from teachers.

`python train.py experiment=ewt teachers='{tagger: <run id>, ner: <run id>, textcat: <run id>}'` trains the
configured multitask model (the pretrained encoder, not a teacher's) on gold labels and on each teacher's
soft predictions for its task, with teacher annealing (`teaching.anneal`: the gold share λ of a taught
task's loss rises from 0 to 1 over training) at temperature `teaching.temperature`. Any subset of the
tasks may have a teacher; a task without one learns from gold alone. A teacher is a FINISHED train.py run
(or a checkpoint) with a head for its task and the same labels as the student's data; one teacher may
teach several tasks. A task given a list of teachers (`teachers='{tagger: [<run id>, <run id>]}'`) learns
from their ensemble: the mean of their scores (logits) for every word or text, the distribution at
temperature T is then the normalised geometric mean of theirs (for the parser, of each teacher's relation
scores at its own best head). Every check runs before any MLflow run exists. The teachers' targets are
cached as distill.py caches them, one entry per teacher (polyhead.distill.teacher).
"""

from __future__ import annotations

from dataclasses import replace

import pytorch_lightning as pl
from omegaconf import DictConfig, ListConfig

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.distill.layers import DistillationModule
from polyhead.distill.teacher import Teacher, load_teacher, mean_targets, targets_cache, teacher_targets
from polyhead.errors import UserError
from polyhead.models.build import build_model, objective_weights, optim_settings
from polyhead.models.multitask import MultitaskModel


def run_job(cfg: DictConfig) -> float | None:
    """`python train.py teachers=...` calls this: train.py's job, failures recorded as train.py's are."""
    from polyhead.training.run import run_job as train_job

    return train_job(cfg, job=run_born_again)


def run_born_again(cfg: DictConfig) -> float | None:
    """Read the data, check and load the teachers, label the training texts (cached), then train.py's run."""
    from polyhead.training.preflight import check_hparams
    from polyhead.training.run import load_data, run

    pl.seed_everything(cfg.seed, workers=True)  # the student's heads start as a plain run's would
    check_hparams(cfg)
    datamodule = load_data(cfg)
    module, tags = born_again_module(cfg, datamodule, build_model(cfg, datamodule.labels))
    return run(cfg, datamodule=datamodule, module=module, tags=tags)


def load_teachers(cfg: DictConfig, labels: dict[str, list[str]]) -> dict[str, list[Teacher]]:
    """`cfg.teachers` ({task: run id | checkpoint | a list of them}) loaded and checked against the student's
    tasks and labels: each task's teachers, in order; a run or checkpoint named twice is loaded once."""
    from polyhead.tracking import mlflow_config

    spec = {task: teacher_names(task, names) for task, names in dict(cfg.teachers).items()}
    check_one_teacher_per_task()
    unknown = [task for task in spec if task not in cfg.model.heads]
    if unknown:
        raise UserError(
            f"teachers.{unknown[0]}: {unknown[0]!r} is not a task of the student (model.heads: "
            f"{', '.join(cfg.model.heads)})"
        )
    mlflow = mlflow_config(cfg)
    uri = mlflow.get("tracking_uri") if mlflow is not None else None
    loaded: dict[str, Teacher] = {}
    for name in dict.fromkeys(name for names in spec.values() for name in names):
        loaded[name] = load_teacher(name, uri)
    teachers = {task: [loaded[name] for name in names] for task, names in spec.items()}
    for task, ensemble in teachers.items():
        for teacher in ensemble:
            check_teacher(task, teacher, labels)
    return teachers


def teacher_names(task: str, names) -> list[str]:
    """One task's teachers as a list of names: one name, or a list of distinct names (an ensemble)."""
    if not isinstance(names, ListConfig | list):
        return [str(names)]
    names = [str(name) for name in names]
    if not names:
        raise UserError(f"teachers.{task}: an empty list; name a teacher, or leave the task out")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"teachers.{task}: {twice[0]} is listed twice; an ensemble's teachers are distinct")
    return names


def check_one_teacher_per_task() -> None:
    """A `teachers={...}` override naming a task twice (Hydra would keep the last) is an error."""
    import yaml
    from hydra.core.hydra_config import HydraConfig

    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key != "teachers" or not value.startswith("{"):
            continue
        pairs = yaml.compose(value, Loader=yaml.SafeLoader)
        tasks = [k.value for k, _ in pairs.value] if isinstance(pairs, yaml.MappingNode) else []
        twice = sorted({t for t in tasks if tasks.count(t) > 1})
        if twice:
            raise UserError(
                f"teachers: the task {twice[0]!r} is named twice; give an ensemble as one list, "
                f"{twice[0]}: [<run id>, <run id>]"
            )


def check_teacher(task: str, teacher: Teacher, labels: dict[str, list[str]]) -> None:
    """The teacher has a head for `task` whose labels are the student's, in the same order."""
    where = f"teachers.{task}={teacher.run_id or teacher.checkpoint}"
    if task not in teacher.model.heads:
        raise UserError(
            f"{where}: the teacher has no {task!r} head (it has {', '.join(teacher.model.heads)})"
        )
    if list(teacher.labels[task]) != list(labels[task]):
        ours, theirs = labels[task], teacher.labels[task]
        diff = sorted(set(ours) ^ set(theirs))[:5] or "the same labels in another order"
        raise UserError(f"{where}: its {task} labels differ from the student's data ({diff})")


def gold_share(anneal) -> float | None:
    """teaching.anneal: true (None: λ rises 0 -> 1 over training) or a fixed gold share λ in [0, 1]."""
    if anneal is True:
        return None
    if isinstance(anneal, bool) or not isinstance(anneal, int | float) or not 0 <= anneal <= 1:
        raise UserError(f"teaching.anneal={anneal}: must be true (annealed) or a gold share in [0, 1]")
    return float(anneal)


def born_again_module(cfg: DictConfig, datamodule: MultitaskDataModule, model: MultitaskModel):
    """The DistillationModule of a run with teachers, its training examples carrying each teacher's logits
    for its task; and the run's tags naming every teacher."""
    share = gold_share(cfg.teaching.anneal)
    teachers = load_teachers(cfg, datamodule.labels)
    train = datamodule.examples["train"]
    root = targets_cache(cfg.teaching.get("cache_dir"))
    per_task = {}
    for task, ensemble in teachers.items():
        targets = [teacher_targets(t, train, root, cfg.teaching.batch_size) for t in ensemble]
        if any(task not in t.logits for t in targets):
            raise UserError(f"teachers.{task}: the teacher's {task} head gives no soft targets")
        per_task[task] = mean_targets(targets, task)
    datamodule.examples["train"] = [
        replace(ex, meta={**ex.meta, "teacher": {t: tg.of(t, i) for t, tg in per_task.items()}})
        for i, ex in enumerate(train)
    ]
    module = DistillationModule(
        model,
        optim_settings(cfg),
        objective_weights(cfg),
        cfg.teaching.temperature,
        alpha=1.0 - (share or 0.0),
        anneal=share is None,
        grad_norm_every=cfg.model.get("grad_norm_every", 0),
    )
    tags = {
        f"distill/teacher/{task}": ",".join(t.run_id or str(t.checkpoint) for t in ensemble)
        for task, ensemble in teachers.items()
    }
    tags["distill/student"] = "born_again"
    tags["distill/anneal"] = "linear" if share is None else f"fixed {share}"
    return module, tags
