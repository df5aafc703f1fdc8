"""kill -9 mid-epoch, then `resume=<run id>`: the killed MLflow run is continued (not a new one) to FINISHED,
its test metrics equal an uninterrupted run's with the same seed, and the steps trained again after the
last checkpoint are not logged twice. The resumed run keeps writing into the killed run's checkpoint folder
and beats the best from before the kill, or tests that one; a checkpoint that cannot resume is one error
and leaves the run as it was."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import PROJECT_ROOT, tiny_run
from mlflow.tracking import MlflowClient

from polyhead.export.checkpoint import pick_checkpoint
from polyhead.tracking import prepare_store

STEPS_PER_EPOCH, KILL_AT = 4, 6  # 3 epochs of 4 steps; killed after step 6, in epoch 2 (checkpoint: step 4)


def train_command(tmp_path, tiny_bert, *extra) -> list[str]:
    tiny = tiny_run(
        tiny_bert,
        f"paths.root_dir={tmp_path}",
        "seed=7",
        "threads=1",
        "trainer.max_epochs=3",
        f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.log_every_n_steps=1",
        "export.enabled=false",
    )
    return [sys.executable, str(PROJECT_ROOT / "train.py"), *tiny, *extra]


def environment() -> dict[str, str]:
    """No hub; stall_callback importable; polyhead from where this test imports it (PYTHONPATH=<src>)."""
    paths = [os.environ.get("PYTHONPATH", ""), str(PROJECT_ROOT / "tests" / "integration")]
    return {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
    }


def start(tmp_path, tiny_bert, *extra) -> subprocess.Popen:
    env = environment()
    cmd = train_command(tmp_path, tiny_bert, *extra)
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(path, proc, timeout=600):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "the run never reached the step to kill it at"
        time.sleep(0.2)


def the_run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run


def history(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path, tiny_bert):
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    for folder in (plain, killed):
        (folder / "mlruns").mkdir(parents=True)
    marker = killed / "stalled"
    stall = ["+callbacks.stall._target_=stall_callback.StallAt", f"+callbacks.stall.step={KILL_AT}"]
    victim = start(killed, tiny_bert, *stall, f"+callbacks.stall.marker={marker}")
    reference = start(plain, tiny_bert)
    wait_for(marker, victim)
    client, run = the_run(killed)
    ckpt = torch.load(f"{run.data.tags['checkpoint_dir']}/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH and ckpt["mlflow_run_id"] == run.info.run_id
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert the_run(killed)[1].info.status == "RUNNING"  # what a kill -9 leaves: nothing could close it
    before = history(client, run.info.run_id, "train/loss")
    # step 5's metrics are logged after the callback stalled; step 4 was logged after the checkpoint
    assert [s for s, _ in before] == list(range(KILL_AT - 1))

    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out[-3000:]
    resumed = start(killed, tiny_bert, f"resume={run.info.run_id}")
    out2, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out2[-3000:]

    client, after = the_run(killed)  # still one run: the killed one, continued
    ref_client, ref = the_run(plain)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    tests = {k: v for k, v in ref.data.metrics.items() if k.startswith("test/")}
    assert tests and {k: after.data.metrics[k] for k in tests} == pytest.approx(tests, abs=1e-4)
    losses = history(client, run.info.run_id, "train/loss")
    assert [s for s, _ in losses] == list(range(3 * STEPS_PER_EPOCH))  # each step once: none replayed twice
    assert dict(losses) == pytest.approx(dict(history(ref_client, ref.info.run_id, "train/loss")), abs=1e-5)
    print("test metrics bitwise equal:", all(after.data.metrics[k] == v for k, v in tests.items()))
    assert [s for s, _ in history(client, run.info.run_id, "data/train_examples")] == [0]


@pytest.mark.slow
def test_resume_run_killed_after_training_before_its_test_is_left_running_not_finished(tmp_path, tiny_bert):
    """Lightning's MLflow logger ends the run FINISHED when fit ends; polyhead keeps it RUNNING through test
    and export, so a kill in between does not leave a FINISHED run without test metrics (a report or a
    study would take it as done)."""
    (tmp_path / "mlruns").mkdir()
    marker = tmp_path / "testing"
    stall = ["+callbacks.stall._target_=stall_callback.StallAtTest", f"+callbacks.stall.marker={marker}"]
    victim = start(tmp_path, tiny_bert, *stall)
    wait_for(marker, victim)
    _, run = the_run(tmp_path)
    assert run.info.status == "RUNNING" and "val/objective" in run.data.metrics
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _, run = the_run(tmp_path)
    assert run.info.status == "RUNNING" and not any(k.startswith("test/") for k in run.data.metrics)


def test_resume_from_a_truncated_checkpoint_is_one_error_and_leaves_the_run(tmp_path, tiny_bert):
    """A run killed while writing last.ckpt (Lightning's save, before atomic saves): resuming it fails with
    one `error:` line before the run is reopened; its checkpoint_dir tag and folder stay for a later resume,
    `export run_id=` and `teacher=`."""
    (tmp_path / "mlruns").mkdir()
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    prepare_store(uri, "polyhead", None)
    client = MlflowClient(uri)
    ckpt_dir = tmp_path / "killed" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(10_000)}, "global_step": 4}, ckpt_dir / "best.ckpt")
    cut = (ckpt_dir / "best.ckpt").read_bytes()[:20_000]
    (ckpt_dir / "last.ckpt").write_bytes(cut)
    experiment = client.get_experiment_by_name("polyhead").experiment_id
    run_id = client.create_run(experiment, tags={"checkpoint_dir": str(ckpt_dir)}).info.run_id

    cmd = train_command(tmp_path, tiny_bert, f"resume={run_id}")
    out = subprocess.run(cmd, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr[-3000:]
    assert len(errors) == 1 and f"resume={run_id}: {ckpt_dir / 'last.ckpt'}: cannot read" in errors[0]
    (run,) = client.search_runs([experiment])
    assert run.info.run_id == run_id and run.info.status == "RUNNING" and "error" not in run.data.tags
    assert run.data.tags["checkpoint_dir"] == str(ckpt_dir)
    assert (ckpt_dir / "last.ckpt").read_bytes() == cut
    assert not list((tmp_path / "outputs").glob("*/*")), "the failed resume left an output folder"


@pytest.mark.slow
def test_resume_keeps_the_best_checkpoint_from_before_the_kill(tmp_path, tiny_bert):
    """Best at epoch 0 (0.9), killed in epoch 1, resumed: epochs 1 and 2 score 0.5 and 0.7, worse than the
    best before the kill. The run tests, reports and returns epoch 0's checkpoint, kept in the run's one
    checkpoint folder. Before, the resumed run wrote to a new folder, ModelCheckpoint forgot the best score
    there, and epoch 2 (0.7) became the best."""
    (tmp_path / "mlruns").mkdir()
    scripted = [
        "+callbacks.score._target_=stall_callback.ScriptedScore",
        "+callbacks.score.scores=[0.9,0.5,0.7]",
        "callbacks.checkpoint.monitor=val/scripted",
    ]
    marker = tmp_path / "stalled"
    stall = ["+callbacks.stall._target_=stall_callback.StallAt", f"+callbacks.stall.step={KILL_AT}"]
    victim = start(tmp_path, tiny_bert, *scripted, *stall, f"+callbacks.stall.marker={marker}")
    wait_for(marker, victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    client, run = the_run(tmp_path)
    ckpt_dir = Path(run.data.tags["checkpoint_dir"])
    best = ckpt_dir / f"best-epoch00-step{STEPS_PER_EPOCH}.ckpt"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [best.name, "last.ckpt"]

    resumed = start(tmp_path, tiny_bert, *scripted, f"resume={run.info.run_id}")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert f"best checkpoint: {best.resolve()}\n" in out, out[-3000:]  # the one trainer.test tested
    client, after = the_run(tmp_path)
    assert after.info.status == "FINISHED" and after.data.tags["checkpoint_dir"] == str(ckpt_dir)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [best.name, "last.ckpt"]
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3 * STEPS_PER_EPOCH  # the resumed run wrote into the same folder
    assert [v for _, v in history(client, run.info.run_id, "val/scripted")] == pytest.approx([0.9, 0.5, 0.7])
    assert pick_checkpoint(ckpt_dir) == best  # what `export run_id=` and `teacher=` take
