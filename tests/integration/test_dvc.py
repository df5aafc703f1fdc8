"""The DVC pipeline: params.yaml is conf/pipeline.yaml composed; `dvc repro` on a fresh copy of the repo
runs pretrain, prepare -> train -> evaluate -> package, then has nothing to do; a changed param re-runs
only its stage."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT


def test_dvc_params_yaml_is_the_composed_pipeline_config(tmp_path):
    """`make params` after changing conf/, or `dvc repro` runs stale params (`dvc exp run` recomposes)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(
        tmp_path / "params.yaml", str(PROJECT_ROOT / "conf"), None, "pipeline", str(tmp_path), []
    )
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == yaml.safe_load(
        (PROJECT_ROOT / "params.yaml").read_text()
    )


def dvc(repo: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, timeout=1800
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_then_only_what_a_param_change_touches(tmp_path):
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    repo = tmp_path / "repo"
    for name in files.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes((PROJECT_ROOT / name).read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=repo, check=True)

    first = dvc(repo, "repro")
    for stage in ("pretrain", "prepare", "train", "evaluate", "package"):
        assert f"Running stage '{stage}'" in first
    metrics = yaml.safe_load((repo / "outputs/dvc/eval/metrics.json").read_text())
    assert metrics["tagger_acc"] > 0.5 and 0 <= metrics["ner_f1"] <= 1 and "textcat_macro_f1" in metrics
    assert list((repo / "outputs/dvc/package").rglob("en_polyhead-0.1.0-*.whl"))
    assert (repo / "mlruns/mlflow.db").is_file() and "mlruns" not in (repo / "dvc.lock").read_text()
    assert (repo / "outputs/dvc/pretrain/encoder/model.safetensors").is_file()

    assert "Data and pipelines are up to date" in dvc(repo, "repro")

    subprocess.run([*git, "commit", "-qam", "lock"], cwd=repo, check=True)
    changed = dvc(repo, "exp", "run", "-S", "export.version=0.2.0")
    assert "Running stage 'package'" in changed
    for stage in ("pretrain", "prepare", "train", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in changed
    assert list((repo / "outputs/dvc/package").rglob("en_polyhead-0.2.0-*.whl"))
    assert "tagger_acc" in dvc(repo, "metrics", "show")
    table = dvc(repo, "exp", "show", "--csv")
    assert "export.version" in table.splitlines()[0] and ",0.2.0," in table
