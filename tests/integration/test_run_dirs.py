"""Every run its own output folder (even two started in the same second), resume finds that run's own
checkpoint; every debug= option runs; the git state is tagged; a run failing after it started is FAILED."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import PROJECT_ROOT, child_env, compose_config, compose_train, tiny_run
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from polyhead.config import claim_dir
from polyhead.export.checkpoint import checkpoint_from_run
from polyhead.tracking import git_commit, git_state, source_checkout
from polyhead.training.run import run, run_job


def test_run_dirs_unique_dir_claims_a_new_folder_each_time(tmp_path):
    base = str(tmp_path / "runs" / "2030-01-01_00-00-00")
    claimed = []
    threads = [threading.Thread(target=lambda: claimed.append(claim_dir(base))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted([base] + [f"{base}_{n}" for n in range(2, 9)])
    cfg = OmegaConf.create({"dir": "${unique_dir:" + base + "}"})
    assert cfg.dir == cfg.dir == f"{base}_9"  # resolved once per config (Hydra copies the cache to its jobs)
    assert OmegaConf.create({"dir": "${unique_dir:" + base + "}"}).dir == f"{base}_10"


def test_run_dirs_hydra_run_and_sweep_dirs_are_claimed(tmp_path):
    cfg = compose_config("train", tmp_path, [], tmp_path / "out")  # drops `hydra`: compose it again raw
    from hydra import compose, initialize_config_dir

    root = tmp_path / "elsewhere"
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        full = compose("train", overrides=[f"paths.root_dir={root}"], return_hydra_config=True)
    for key, folder in (("run", "runs"), ("sweep", "multiruns")):
        assert OmegaConf.to_container(full.hydra[key])["dir"].startswith(
            "${unique_dir:${paths.root_dir}/outputs/"
        )
        # under paths.root_dir (beside its mlruns/), not under the working directory
        assert (
            Path(full.hydra[key].dir).parent == root / "outputs" / folder
            and Path(full.hydra[key].dir).is_dir()
        )
    assert cfg.trainer.max_time is None


def test_run_dirs_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path, tiny_bert):
    (tmp_path / "mlruns").mkdir()
    same = "hydra.run.dir=${unique_dir:outputs/runs/same-second}"  # both runs ask for the same folder
    tiny = tiny_run(
        tiny_bert,
        f"paths.root_dir={tmp_path}",
        "threads=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "export.enabled=false",
    )
    env = child_env(HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin", TOKENIZERS_PARALLELISM="false")
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "train.py"), same, *tiny, f"seed={seed}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    folders = sorted(p.name for p in (tmp_path / "outputs" / "runs").iterdir())
    assert folders == ["same-second", "same-second_2"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    ckpt_dirs = {r.info.run_id: r.data.tags["checkpoint_dir"] for r in runs}
    assert len(runs) == 2 and len(set(ckpt_dirs.values())) == 2
    for run_id, ckpt_dir in ckpt_dirs.items():
        assert Path(ckpt_dir).parent.name in folders
        assert sorted(p.name for p in Path(ckpt_dir).glob("last*.ckpt")) == ["last.ckpt"]  # no last-v1
        ckpt = checkpoint_from_run(f"sqlite:///{tmp_path}/mlruns/mlflow.db", run_id)  # what resume= loads
        assert torch.load(ckpt, map_location="cpu", weights_only=True)["mlflow_run_id"] == run_id
    for folder in folders:  # each run its own log and Hydra config
        log = (tmp_path / "outputs" / "runs" / folder / "train.log").read_text()
        assert log.count("Seed set to") == 1


@pytest.mark.parametrize("debug", sorted(p.stem for p in (PROJECT_ROOT / "conf" / "debug").glob("*.yaml")))
def test_run_dirs_every_debug_option_runs(tmp_path, tiny_bert, debug):
    cfg = compose_train(tmp_path, tiny_bert, f"debug={debug}")
    run(cfg)
    assert (tmp_path / "out" / "spacy_pipeline" / "meta.json").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert all(r.info.status == "FINISHED" for r in runs)  # none left RUNNING
    if cfg.trainer.fast_dev_run:
        assert runs == []  # Lightning logs nothing under fast_dev_run: no empty run either
    else:
        assert len(runs) == 1 and "test/tagger_acc" in runs[0].data.metrics


def test_run_dirs_git_state_counts_changed_and_untracked_files(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.yaml").write_text("a: 1\n")
    subprocess.run([*git, "add", "a.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    assert git_state(str(tmp_path)) == {
        "git_dirty": "false",
        "git_changed_files": "0",
        "git_untracked_files": "0",
    }
    (tmp_path / "a.yaml").write_text("a: 2\n")
    (tmp_path / "new.yaml").write_text("b: 1\n")
    assert git_state(str(tmp_path)) == {
        "git_dirty": "true",
        "git_changed_files": "1",
        "git_untracked_files": "1",
    }


def test_run_dirs_run_failing_after_it_started_is_failed_with_its_error(tmp_path, tiny_bert):
    cfg = compose_train(tmp_path, tiny_bert, "trainer.max_epochs=1", "export.lang=zz_no_such_language")
    with pytest.raises(Exception, match="zz_no_such_language"):
        run_job(cfg)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert r.info.status == "FAILED" and "zz_no_such_language" in r.data.tags["error"]


def test_run_dirs_records_the_commit_of_the_code_it_ran_not_of_its_root_dir(tmp_path):
    """paths.root_dir (here a folder outside any repository) keeps outputs; the commit is the checkout's whose
    code and conf/ ran (this one, an editable install), so a study run with a private store still names it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("the project is not a git checkout")
    cfg = compose_config("train", tmp_path, [], tmp_path / "out")
    assert git_commit(str(tmp_path)) == "unknown"
    assert git_commit(source_checkout(cfg)).removesuffix("-dirty") == head.stdout.strip()
