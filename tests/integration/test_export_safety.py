"""Loading what a run wrote runs nothing it names: a crafted checkpoint (export, distill), a pipeline's
encoder.json, a package beside an installed polyhead; package names stay inside the packages folder; a
re-export leaves no stale component; a failing command deletes no folder it did not create."""

import json
import pickle
import re
import shutil
import subprocess
import sys

import pytest
import spacy
import torch
from conftest import PROJECT_ROOT, SHORT, TINY_TRAINER, child_env, compose_config, tiny_run
from omegaconf import OmegaConf

from polyhead.distill.run import run_job as distill
from polyhead.distill.teacher import load_teacher
from polyhead.errors import UserError
from polyhead.export.__main__ import export
from polyhead.export.checkpoint import load_checkpoint
from polyhead.export.pipeline import export_pipeline
from polyhead.models.encoder import Encoder
from polyhead.models.multitask import MultitaskModel
from polyhead.training.run import run

LIMITS = ["trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """A tiny run's folder: its checkpoint and exported pipeline."""
    tmp = tmp_path_factory.mktemp("safety")
    overrides = tiny_run(tiny_bert, *LIMITS, "logger=csv", "export.name=tiny_safe")
    run(compose_config("train", tmp, overrides, tmp / "out"))
    return tmp, next((tmp / "out" / "checkpoints").glob("*.ckpt"))


class OpensFile:
    """Unpickled, opens its path for writing: what a pickle may run, harmlessly."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def crafted(ckpt, dest, edit) -> str:
    """A copy of `ckpt` whose stored config is edit(config tree), or edit(YAML text) for a str result."""
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    tree = OmegaConf.create(data["polyhead"]["config"])
    out = edit(tree)
    data["polyhead"]["config"] = out if isinstance(out, str) else OmegaConf.to_yaml(tree)
    torch.save(data, dest)
    return str(dest)


def replace(key: str, value):
    """An edit that sets the stored config's `key` to `value`."""
    return lambda tree: OmegaConf.update(tree, key, value, merge=False)


def appended(line: str):
    """An edit that adds a top-level `line` to the stored YAML."""
    return lambda tree: OmegaConf.to_yaml(tree) + line


def victim_attacks(victim, marker) -> dict:
    """name -> (edit, the key the refusal names) for each way a stored config could run code."""
    opens = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    pickled = pickle.dumps(OpensFile(str(marker)))  # torch.load(weights_only=False) of it opens `marker`
    torch_load = {
        "_target_": "torch.load",
        "f": {"_target_": "io.BytesIO", "initial_bytes": pickled},  # written as a !!binary value
        "weights_only": False,
    }
    return {
        "open": (replace("encoder", opens), "encoder._target_"),
        "pickle": (replace("encoder", torch_load), "encoder.f.initial_bytes"),
        "binary_tag": (appended("note: !!binary aGVsbG8=\n"), "note"),
        "python_tag": (appended(f"note: !!python/object/apply:pathlib.Path ['{victim}']\n"), "note"),
        "data_open": (replace("data", opens), "data._target_"),
    }


@pytest.mark.parametrize("attack", ["open", "pickle", "binary_tag", "python_tag", "data_open"])
def test_export_safety_crafted_checkpoint_is_refused_and_runs_nothing(trained, tmp_path, attack):
    tmp, ckpt = trained
    victim, marker = tmp_path / "victim.txt", tmp_path / "marker.txt"
    victim.write_text("precious")
    edit, key = victim_attacks(victim, marker)[attack]
    bad = crafted(ckpt, tmp_path / "bad.ckpt", edit)
    with pytest.raises(UserError) as exported:
        export(compose_config("export", tmp_path, [f"checkpoint={bad}"], tmp_path / "x"))
    with pytest.raises(UserError) as distilled:
        load_teacher(bad, None)
    for err in (exported, distilled):
        message = str(err.value)
        assert message.startswith(f"{bad}: the stored config's {key} ") and "\n" not in message, message
    assert victim.read_text() == "precious" and not marker.exists()


def test_export_safety_distill_never_builds_the_teachers_data_from_code(trained, tmp_path):
    """distill.py teacher=<crafted>: refused before any corpus is read or any target called."""
    tmp, ckpt = trained
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    edit, _ = victim_attacks(victim, tmp_path / "marker.txt")["data_open"]
    bad = crafted(ckpt, tmp_path / "bad.ckpt", edit)
    overrides = [f"teacher={bad}", "student.keep=[0]", "logger=csv", *SHORT, *TINY_TRAINER, *LIMITS]
    cfg = compose_config("distill", tmp_path, overrides, tmp_path / "out")
    with pytest.raises(UserError, match="data._target_"):
        distill(cfg)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("export.version=1.0/../../victim", "export.version='1.0/../../victim': not a PEP 440 version"),
        ("export.lang=xx/../../victim", "export.lang='xx/../../victim': not a spaCy language"),
        ("export.lang=zz", "export.lang='zz': spaCy has no such language"),
        ("export.name=my-model", "export.name='my-model': a package name must be a Python identifier"),
    ],
)
def test_export_safety_package_names_stay_in_the_packages_folder(trained, tmp_path, override, error):
    tmp, ckpt = trained
    overrides = [f"checkpoint={ckpt}", "package=true", "build=[]", override]
    with pytest.raises(UserError, match=re.escape(error)):
        export(compose_config("export", tmp_path, overrides, tmp_path / "x"))
    assert not (tmp_path / "x" / "victim").exists() and not (tmp_path / "x" / "spacy_pipeline").exists()


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"attn_implementation": "kernels-community/flash-attn"}, "attn_implementation='kernels-community/"),
        ({"attn_implementation": "flash_attention_2"}, "attn_implementation='flash_attention_2'"),
        ({"keep_layers": [0]}, "'keep_layers' is not a setting a pipeline may give"),
    ],
)
def test_export_safety_encoder_json_cannot_reach_the_hub(trained, tmp_path, settings, error):
    tmp, _ = trained
    pipeline = shutil.copytree(tmp / "out" / "spacy_pipeline", tmp_path / "pipeline")
    file = pipeline / "encoder" / "encoder.json"
    written = json.loads(file.read_text())
    file.write_text(json.dumps({**written, **settings}))
    with pytest.raises(UserError, match=f"^{re.escape(str(file))}: .*{re.escape(error)}"):
        spacy.load(pipeline)
    file.write_text(json.dumps({**written, "attn_implementation": "sdpa"}))
    assert spacy.load(pipeline)("Maria flew .")[0].pos_


def test_export_safety_attn_implementation_is_checked_at_config_time(tiny_bert):
    with pytest.raises(UserError, match="encoder.attn_implementation='kernels-community/x': must be eager"):
        Encoder(str(tiny_bert), window=30, stride=20, attn_implementation="kernels-community/x")


def test_export_safety_reexport_leaves_no_stale_component(trained, tmp_path):
    tmp, ckpt = trained
    model, collate, _ = load_checkpoint(ckpt)
    path = export_pipeline(model, collate, tmp_path / "pipeline")
    assert {"ner", "textcat"} <= {p.name for p in path.iterdir()}
    tagger_only = MultitaskModel(model.encoder, {"tagger": model.heads["tagger"]})
    export_pipeline(tagger_only, collate, path)
    assert not {"ner", "textcat"} & {p.name for p in path.iterdir()}
    assert spacy.load(path).pipe_names == ["encoder", "tagger"]
    assert [p.name for p in tmp_path.iterdir()] == ["pipeline"]  # nothing left beside it
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="notes: exists and is not a spaCy pipeline folder"):
        export_pipeline(tagger_only, collate, tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_export_safety_failed_command_keeps_a_folder_it_did_not_create(tmp_path):
    """A fixed hydra.run.dir holding an earlier run's log and config outlives a command that fails."""
    for name in ("conf", "pyproject.toml"):  # python -m polyhead.export finds conf/ from the cwd
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    earlier = tmp_path / "earlier"
    (earlier / ".hydra").mkdir(parents=True)
    (earlier / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (earlier / "train.log").write_text("an earlier run's log\n")
    command = ["-m", "polyhead.export", "checkpoint=/nonexistent.ckpt", f"paths.root_dir={tmp_path}"]
    env = child_env(HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin", OMP_NUM_THREADS="1")  # this polyhead
    fixed = [sys.executable, *command, f"hydra.run.dir={earlier}"]
    out = subprocess.run(fixed, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "error: /nonexistent.ckpt" in out.stderr, out.stderr[-2000:]
    assert (earlier / "train.log").read_text() == "an earlier run's log\n"
    out = subprocess.run([sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "error: /nonexistent.ckpt" in out.stderr, out.stderr[-2000:]
    assert not list((tmp_path / "outputs").glob("*/*")), "a folder the command claimed itself is removed"


# In a fresh interpreter: a polyhead of other code importable (PYTHONPATH), the package imported from its
# folder, after `preload` ran; prints which polyhead the components came from.
LOAD_PACKAGE = """
import importlib, json, sys
exec(sys.argv[3])
sys.path.insert(0, sys.argv[1])
try:
    nlp = importlib.import_module(sys.argv[2]).load()
except ImportError as err:
    print(json.dumps({"error": str(err)}))
    raise SystemExit(0)
doc = nlp("Maria flew to Rome .")
components = sys.modules["polyhead.export.components"].__file__
print(json.dumps({"components": components, "tags": [t.pos_ for t in doc]}))
"""


@pytest.fixture(scope="module")
def package(trained, tmp_path_factory):
    tmp, ckpt = trained
    out = tmp_path_factory.mktemp("package")
    overrides = [f"checkpoint={ckpt}", "package=true", "build=[]"]
    folder = export(compose_config("export", out, overrides, out / "x"))
    return folder, next(folder.glob("*/*/polyhead"))


def installed_copy(vendored, root, version: str):
    """A polyhead at `root` with the package's runtime modules, its __init__ saying `version`."""
    shutil.copytree(vendored, root / "polyhead")
    init = root / "polyhead" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text()))
    return root


@pytest.mark.parametrize(
    ("installed", "preload", "runs"),
    [
        ("older", "", "vendored"),
        ("older", "import spacy; spacy.blank('en')", "vendored"),  # its entry-point factories are loaded
        ("older", "import polyhead.export.components", "refused"),
        ("same", "", "installed"),
    ],
)
def test_export_safety_package_runs_its_own_runtime_unless_the_installed_is_the_same(
    package, tmp_path, installed, preload, runs
):
    folder, vendored = package
    root = tmp_path / "site"
    if installed == "same":
        shutil.copytree(vendored, root / "polyhead")
    else:
        installed_copy(vendored, root, "0.0.1")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_PACKAGE, str(folder), folder.name.rsplit("-", 1)[0], preload],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if runs == "refused":
        assert "already imported other polyhead code" in got["error"]
        return
    assert got["tags"] and all(got["tags"])
    assert got["components"].startswith(str(vendored if runs == "vendored" else root)), got["components"]
