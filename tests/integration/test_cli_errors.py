"""A user error on the command line is one `error:` line and exit status 1: no traceback, no MLflow run, no
output folder left behind. A bug (or HYDRA_FULL_ERROR=1) keeps its traceback."""

import re
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, child_env, tiny_run

# case -> (command line after `python`, the one error message expected, extra environment)
CASES = {
    "bad_corpus": (["train.py", "data.train.0.path={tmp}/bad.jsonl"], r"bad\.jsonl:1: ", {}),
    "missing_corpus": (["train.py", "paths.corpora={tmp}/nowhere", "data=ewt"], r"nowhere/.*not found", {}),
    "encoder_folder": (
        ["train.py", "encoder.name=/nonexistent"],
        r"^encoder\.name=/nonexistent: the folder does not exist$",
        {},
    ),
    "encoder_hub_name": (
        ["train.py", "encoder.name=nobody-knows-this-model"],
        r"no such folder, and not a known model: the hub is offline",
        {},
    ),
    "negative_lr": (["train.py", "optim.lr=-1e-4"], r"^optim\.lr=-0\.0001: must be >= 0$", {}),
    "negative_task_lr": (
        ["train.py", "+model.heads.tagger.lr=-1"],
        r"^model\.heads\.tagger\.lr=-1: must be >= 0$",
        {},
    ),
    "bad_schedule": (["train.py", "optim.schedule=cosine_typo"], r"optim\.schedule must be constant", {}),
    "resume_path": (["train.py", "resume={tmp}/nowhere.ckpt"], r"nowhere\.ckpt: no such checkpoint file", {}),
    "resume_run_id": (
        ["train.py", "resume=0123456789abcdef"],
        r"0123456789abcdef: not a checkpoint file, nor a run",
        {},
    ),
    "export_truncated": (
        ["-m", "polyhead.export", "checkpoint={tmp}/truncated.ckpt", "paths.root_dir={tmp}"],
        r"truncated\.ckpt: cannot read the checkpoint \(truncated",
        {},
    ),
}


def command(case: str, tmp_path, tiny_bert) -> list[str]:
    args, _, _ = CASES[case]
    args = [a.format(tmp=tmp_path) for a in args]
    if args[0] == "train.py":
        args = [
            str(PROJECT_ROOT / "train.py"),
            *tiny_run(tiny_bert, f"paths.root_dir={tmp_path}", "export.enabled=false"),
            *args[1:],
        ]
    return [sys.executable, *args]


def environment(**extra) -> dict[str, str]:
    env = child_env(
        HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1"
    )
    return {**env, **extra}


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_bert):
    """Every case in its own folder, run three at a time (start-up, not training, is what takes time)."""
    done, pending = {}, list(CASES)
    while pending:
        batch, pending = pending[:3], pending[3:]
        procs = {}
        for case in batch:
            tmp = tmp_path_factory.mktemp(case)
            (tmp / "bad.jsonl").write_text('{"tokens": ["a", "b"], "tags": ["X"]}\n')
            (tmp / "truncated.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
            for name in ("conf", "pyproject.toml"):  # python -m polyhead.export finds conf/ from the cwd
                (tmp / name).symlink_to(PROJECT_ROOT / name)
            env = environment(**CASES[case][2])
            procs[case] = (
                tmp,
                subprocess.Popen(
                    command(case, tmp, tiny_bert),
                    cwd=tmp,
                    env=env,
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
        for case, (tmp, proc) in procs.items():
            out, err = proc.communicate(timeout=600)
            done[case] = (tmp, proc.returncode, out, err)
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_cli_errors_user_error_is_one_message_and_leaves_nothing(results, case):
    tmp, code, out, err = results[case]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1, (out[-2000:], err[-3000:])
    assert "Traceback" not in out + err, err[-3000:]
    assert len(errors) == 1, err[-3000:]
    assert re.search(CASES[case][1], errors[0].removeprefix("error: ")), errors[0]
    assert not list((tmp / "outputs").glob("*/*")), "a failed start left an output folder"
    assert not (tmp / "mlruns" / "mlflow.db").exists(), "a failed start created an MLflow store or run"


def test_cli_errors_full_error_keeps_the_traceback(tmp_path, tiny_bert):
    cmd = command("negative_lr", tmp_path, tiny_bert)
    out = subprocess.run(
        cmd, cwd=tmp_path, env=environment(HYDRA_FULL_ERROR="1"), capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "UserError: optim.lr=-0.0001: must be >= 0" in out.stderr
