"""A real `mlflow server` over the project's sqlite store: a sweep's runs come back through the REST API with
flat params and per-task metrics, as the MLflow UI shows them."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from pytorch_lightning.loggers import MLFlowLogger

SWEEP = "2026-01-02_03-04-05"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_run(uri: str, artifacts: str, sweep: str, decay: float, seed: int) -> dict[str, float]:
    """A run logged the way polyhead.training.run logs one: nested config through Lightning's MLFlowLogger."""
    logger = MLFlowLogger("polyhead", tracking_uri=uri, artifact_location=artifacts)
    logger.log_hyperparams({"seed": seed, "optim": {"layer_decay": decay}, "data": {"train_limit": 100}})
    metrics = {
        "test/tagger_acc": 0.8 + seed / 100,
        "test/ner_f1": 0.5 + decay / 10,
        "test/textcat_macro_f1": 0.6,
    }
    logger.log_metrics({**metrics, "data/train_examples": 100.0})
    logger.experiment.set_tag(logger.run_id, "sweep_id", sweep)
    logger.finalize("success")
    return metrics


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tmp_path):
    """`mlflow server` on a free loopback port over a sqlite store under tmp_path; always stopped."""
    (tmp_path / "mlruns").mkdir()
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    artifacts = str(tmp_path / "mlruns" / "artifacts")
    expected = {
        (decay, seed): log_run(uri, artifacts, SWEEP, decay, seed) for decay in (1.0, 0.9) for seed in (1, 2)
    }
    log_run(uri, artifacts, "another-sweep", 0.8, 1)
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += [
        "--default-artifact-root",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, tmp_path / "server.log", timeout=90)
        yield base, expected
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def wait_healthy(base: str, proc: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"mlflow server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def test_mlflow_server_rest_api_returns_sweep_runs_with_flat_params_and_task_metrics(server):
    base, expected = server
    experiment = api(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=polyhead")["experiment"]
    found = api(
        base,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment["experiment_id"]], "filter": f"tags.sweep_id = '{SWEEP}'"},
    )["runs"]
    assert len(found) == len(expected)  # the other sweep's run is not among them
    seen = set()
    for run in found:
        assert run["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params.keys() == {"seed", "optim/layer_decay", "data/train_limit"}  # flat, slash-joined
        assert params["data/train_limit"] == "100"
        key = (float(params["optim/layer_decay"]), int(params["seed"]))
        seen.add(key)
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics.pop("data/train_examples") == 100.0
        assert metrics == pytest.approx(expected[key])
        assert {t["key"]: t["value"] for t in run["data"]["tags"]}["sweep_id"] == SWEEP
    assert seen == set(expected)
