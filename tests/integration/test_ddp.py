"""trainer=ddp for real: two CPU processes over gloo train one model and log one MLflow run whose test
metrics cover the whole test split (reduced across processes, not one process's half)."""

import pytest
import spacy
from conftest import sweep_run, train_py
from mlflow.tracking import MlflowClient
from spacy.tokens import Doc

from polyhead.config import PACKAGE_DIR
from polyhead.data.readers import read_corpus


@pytest.mark.slow
def test_ddp_two_cpu_processes_log_one_run_with_whole_split_metrics(tmp_path, tiny_bert):
    out = train_py(
        tmp_path,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "data.eval_batch_size=8",
        f"hydra.run.dir={tmp_path}/run",
        *[o for o in sweep_run(tmp_path, tiny_bert) if o != "export.enabled=false"],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out.stdout + out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer/strategy"] == "ddp_find_unused_parameters_true"

    nlp = spacy.load(tmp_path / "run" / "spacy_pipeline")  # the tested weights, exported by rank 0
    gold = read_corpus(PACKAGE_DIR / "corpora" / "demo_test.jsonl", "jsonl")
    docs = nlp.pipe(Doc(nlp.vocab, words=ex.words, spaces=ex.spaces) for ex in gold)
    pairs = [(t.pos_, tag) for doc, ex in zip(docs, gold) for t, tag in zip(doc, ex.get("tags"))]
    accuracy = sum(p == g for p, g in pairs) / len(pairs)
    assert run.data.metrics["test/tagger_acc"] == pytest.approx(accuracy, abs=1e-6)
