"""A config read back from a checkpoint is data: a run's own config reads back and builds; anything that
names other code, carries a YAML tag or an interpolation is refused with one line naming the key."""

from __future__ import annotations

import functools

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.stored_config import StoredConfigError, build_stored, read_stored_config


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> str:
    """The YAML a run stores in its checkpoints (training.callbacks.state.RunSpec): the resolved config."""
    tmp = tmp_path_factory.mktemp("stored")
    cfg = compose_config("train", tmp, ["model=multitask_parser"], tmp / "out")
    return OmegaConf.to_yaml(cfg, resolve=True)


def edited(text: str, key: str, value) -> str:
    tree = OmegaConf.create(text)
    OmegaConf.update(tree, key, value, force_add=True)
    return OmegaConf.to_yaml(tree)


def test_stored_config_reads_a_run_config_back_and_builds_from_the_allow_list(stored):
    cfg = read_stored_config(stored, "run.ckpt")
    assert {"data", "encoder", "model", "objective", "export", "seed"} <= set(cfg)
    assert not {"trainer", "callbacks", "logger", "optim", "paths"} & set(cfg)  # never built from one
    assert isinstance(build_stored(cfg.data), MultitaskDataModule)
    tagger = build_stored(cfg.model.heads.tagger)
    assert isinstance(tagger, functools.partial) and tagger.func is TokenTaggingHead
    assert isinstance(tagger(hidden_size=8, labels=["A", "B"]), TokenTaggingHead)


def test_stored_config_of_a_checkpoint_saved_before_the_callbacks_moved_reads_back(stored):
    """Checkpoints saved before polyhead.callbacks became polyhead.training.callbacks store the old paths;
    only the callbacks name them, and a stored config's callbacks are never read."""
    old = stored.replace("polyhead.training.callbacks.", "polyhead.callbacks.")
    assert "_target_: polyhead.callbacks.state.RngState" in old
    cfg = read_stored_config(old, "old.ckpt")
    assert cfg == read_stored_config(stored, "new.ckpt") and "callbacks" not in cfg
    assert build_stored(cfg.model.heads.tagger).func is TokenTaggingHead


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("encoder._target_", "builtins.open", "encoder._target_"),
        ("model.heads.tagger._target_", "torch.load", "model.heads.tagger._target_"),
        ("model.heads.tagger._partial_", False, "model.heads.tagger._partial_"),
        ("data._target_", "io.BytesIO", "data._target_"),
        ("data.train.0.options", {"_target_": "builtins.open", "file": "x"}, "data.train.0.options._target_"),
        ("export.extra", {"_target_": "builtins.exec"}, "export.extra._target_"),
        ("encoder._args_", ["x"], "encoder._args_"),
        ("data.train.0.format", "my.module.reader", "data.train.0.format"),
        ("export.description", "${unique_dir:/tmp/polyhead-stored-config-test}", "export.description"),
        ("export.lang", "en.foo", "export.lang"),
    ],
)
def test_stored_config_refuses_code_and_interpolations_naming_the_key(stored, key, value, named, tmp_path):
    with pytest.raises(StoredConfigError) as err:
        read_stored_config(edited(stored, key, value), str(tmp_path / "run.ckpt"))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "run.ckpt"))
    assert f"{named} " in message


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("x: !!binary gASVIAAAAAAAAACMAm9zlIwGc3lzdGVtlJOUjAR0cnVllIWUUpQu\n", "tag:yaml.org,2002:binary"),
        ("x: !!python/object/apply:os.system ['true']\n", "tag:yaml.org,2002:python/object/apply:os.system"),
        ("x: !!python/object/apply:pathlib.Path ['/']\n", "python/object/apply:pathlib.Path"),
        ("x: !custom 1\n", "!custom"),
        ("a: &big [1, 2]\nb: *big\n", "alias"),
    ],
)
def test_stored_config_refuses_yaml_tags_and_aliases(stored, extra, named):
    with pytest.raises(StoredConfigError, match="^run.ckpt: the stored config") as err:
        read_stored_config(stored + extra, "run.ckpt")
    assert named in str(err.value) and "\n" not in str(err.value)


def test_stored_config_refuses_what_is_not_a_config(stored):
    for text in ("- a list\n", b"bytes", "a: [unclosed\n"):
        with pytest.raises(StoredConfigError, match="^run.ckpt: "):
            read_stored_config(text, "run.ckpt")
    with pytest.raises(StoredConfigError, match="builtins.open"):
        build_stored({"_target_": "builtins.open", "file": "x", "mode": "w"})


def test_stored_config_student_keeps_only_the_teachers_sections(stored, tmp_path):
    """distill's student config: the teacher's data/encoder/model/objective/export and plain values; what
    trains (trainer, callbacks, loggers, optimiser, paths) is the distill command's own."""
    from polyhead.distill.layers import student_config

    teacher = OmegaConf.create(stored)
    teacher.extra = {"_target_": "builtins.exec", "source": "raise SystemExit"}
    teacher.trainer = {"_target_": "builtins.exec", "source": "raise SystemExit"}
    own = compose_config("distill", tmp_path, ["teacher=x.ckpt", "student.keep=[0]"], tmp_path / "out")
    out = student_config(teacher, own)
    as_written = functools.partial(OmegaConf.to_container, resolve=False)
    assert "extra" not in out and as_written(out.trainer) == as_written(own.trainer)
    assert as_written(out.logger) == as_written(own.logger)
    assert out.data == teacher.data and out.encoder.keep_layers == [0]


def test_stored_config_report_builds_nothing_it_reads_back():
    """polyhead.report reads MLflow params, tags and metrics back as strings: no call of it may build or
    unpickle what a store holds."""
    import ast
    from pathlib import Path

    import polyhead.report

    forbidden = {
        "instantiate",
        "call",
        "create",
        "load",
        "loads",
        "unsafe_load",
        "eval",
        "exec",
        "import_module",
    }
    allowed = {("json", "loads")}  # plain data
    found = []
    for file in Path(polyhead.report.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
                if name in forbidden and (owner, name) not in allowed:
                    found.append(f"{file.name}:{node.lineno} {owner}.{name}")
    assert not found, found
