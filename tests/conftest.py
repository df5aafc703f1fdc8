"""Shared fixtures: no network, a tiny random BERT with a tokenizer over a checked-in toy vocabulary."""

import os
import random
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # a stray hub download fails loudly instead of hanging
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# A tiny run: what every test that trains shares; a test passes its own values after these (the later wins).
TINY_ENCODER = ["encoder.window=30", "encoder.stride=20"]  # windows within the tiny BERT's 64 positions
TINY_TRAINER = ["trainer.precision=32-true", "trainer.enable_progress_bar=false"]  # fp32 on every CPU, no bar
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]  # one epoch of two batches
TINY_RUN = [*TINY_ENCODER, *SHORT, *TINY_TRAINER]


def child_env(**env: str) -> dict[str, str]:
    """The environment `env` of a child python, which runs the polyhead this test imports: with
    PYTHONPATH=<checkout>/src set here (a worktree beside the installed one), the child gets it too."""
    return env | ({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})


def write_tiny_bert(directory: Path, max_positions: int = 64, layers: int = 2) -> Path:
    """A random BERT, `layers` deep (2 by default) and 32 wide, saved like any pretrained encoder (safetensors
    + tokenizer files)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=True)  # transformers 5
    assert tokenizer.vocab_size > 50, "the toy vocabulary was not loaded"
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def compose_config(name: str, tmp_path: Path, overrides: list[str], output_dir: Path):
    """Compose conf/<name>.yaml as its script does (Hydra runtime set), with a private root and store."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(name, overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    """A small corpus file the test writes itself: text as UTF-8, bytes as given."""
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def tiny_run(tiny_bert: Path, *extra: str, short: bool = True) -> list[str]:
    """Overrides of a tiny run on `tiny_bert`, then `extra`; short=False: the configured epochs, batches."""
    return [f"encoder.name={tiny_bert}", *TINY_ENCODER, *(SHORT if short else []), *TINY_TRAINER, *extra]


def compose_train(tmp_path: Path, tiny_bert: Path, *overrides: str):
    """Compose conf/train.yaml like `python train.py` does: 2 epochs of 3 batches, every step logged."""
    tiny = tiny_run(
        tiny_bert, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.log_every_n_steps=1"
    )
    return compose_config("train", tmp_path, [*tiny, *overrides], tmp_path / "out")


def only_run(tmp_path: Path):
    """(client, runs) of the MLflow store under tmp_path."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, runs


def sweep_run(tmp_path: Path, tiny_bert: Path) -> list[str]:
    """Overrides of a tiny `python train.py -m` under tmp_path: its store, its sweep folder, no export."""
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    where = [f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/multirun/study"]
    return tiny_run(tiny_bert, *where, "export.enabled=false")


def train_py(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python train.py *args` in tmp_path, offline, with this checkout's polyhead."""
    env = child_env(HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)


# Two CoNLL-U sentences: a multiword token (1-2), an empty node (4.1), a genre comment, SpaceAfter=No.
CONLLU = """# newdoc id = weblog-abc
# sent_id = weblog-abc-0001
# text = Don't go to Rome.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4\tto\tto\tADP\tIN\t_\t5\tcase\t_\t_
4.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t3:conj\t_
5\tRome\tRome\tPROPN\tNNP\t_\t3\tobl\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = email-xyz-0002
# genre = letters
1-2\tI'm\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No
1\tI\tI\tPRON\tPRP\t_\t2\tnsubj\t_\t_
2\t'm\tbe\tAUX\tVBP\t_\t0\troot\t_\t_
3\t!\t!\tPUNCT\t.\t_\t2\tpunct\t_\t_
"""


NOUNS = [("cat", "cats"), ("dog", "dogs"), ("city", "cities"), ("mouse", "mice"), ("box", "boxes")]
VERBS = [("sit", "sat", "sitting"), ("run", "ran", "running"), ("see", "saw", "seeing")]
NAMES = ["Paris", "Maria", "Lopez", "Rome"]


def ud_sentence(rng: random.Random, n: int) -> str:
    """One CoNLL-U sentence: DET NOUN VERB [ADP PROPN] PUNCT, with features, lemmas and a tree."""
    lemma_n, plural = rng.choice(NOUNS)
    lemma_v, past, gerund = rng.choice(VERBS)
    many = rng.random() < 0.5
    noun, feats_n = (plural, "Number=Plur") if many else (lemma_n, "Number=Sing")
    progressive = rng.random() < 0.5
    rows = [("The", "the", "DET", "DT", "Definite=Def|PronType=Art", 2, "det")]
    rows.append((noun, lemma_n, "NOUN", "NNS" if many else "NN", feats_n, 3, "nsubj"))
    if progressive:
        rows.append((gerund, lemma_v, "VERB", "VBG", "Tense=Pres|VerbForm=Part", 0, "root"))
    else:
        rows.append((past, lemma_v, "VERB", "VBD", "Mood=Ind|Tense=Past|VerbForm=Fin", 0, "root"))
    if rng.random() < 0.5:
        rows.append(("in", "in", "ADP", "IN", "_", 5, "case"))
        rows.append((rng.choice(NAMES), None, "PROPN", "NNP", "Number=Sing", 3, "obl"))
    rows.append((".", ".", "PUNCT", ".", "_", 3, "punct"))
    genre = "news" if progressive else "blog"
    lines = [f"# sent_id = {genre}-{n}"]
    for i, (form, lemma, upos, xpos, feats, head, rel) in enumerate(rows, 1):
        lines.append("\t".join([str(i), form, lemma or form, upos, xpos, feats, str(head), rel, "_", "_"]))
    return "\n".join(lines)


def iob_lines(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    return f"{name}\tB-PER\nflew\tO\nto\tO\nNew\tB-LOC\nYork\tI-LOC\n"


def write_task_corpora(tmp: Path) -> None:
    """The nine tasks' corpora (tests/integration/test_tasks.py): UD CoNLL-U with a genre per sentence,
    an IOB2 column file, two classification line files; train, dev and test."""
    rng = random.Random(0)
    for split, n in (("train", 60), ("dev", 12), ("test", 12)):
        (tmp / f"{split}.conllu").write_text("\n\n".join(ud_sentence(rng, i) for i in range(n)) + "\n")
        (tmp / f"{split}.iob").write_text("\n".join(iob_lines(rng) for _ in range(n)))
        for task, labels in (("a", ["balance", "card"]), ("b", ["weather", "timer"])):
            lines = [f"{label} what about my {label} please" for label in labels for _ in range(n // 2)]
            (tmp / f"{split}.{task}.txt").write_text("\n".join(lines) + "\n")


def task_corpora(tmp: Path, split: str) -> list[dict]:
    """`data.<split>` of the nine tasks over write_task_corpora's files."""
    ud = {
        "upos": "upos",
        "xpos": "xpos",
        "feats": "feats",
        "lemma": "lemma",
        "parser": "tree",
        "genre": "cats",
    }
    return [
        {
            "path": str(tmp / f"{split}.conllu"),
            "format": "conllu",
            "tasks": ud,
            "options": {"cat_from": "sent_id_prefix"},
        },
        {"path": str(tmp / f"{split}.iob"), "format": "columns", "tasks": {"ner": "1:iob2"}},
        {"path": str(tmp / f"{split}.a.txt"), "format": "lines", "tasks": {"bank": "cats"}},
        {"path": str(tmp / f"{split}.b.txt"), "format": "lines", "tasks": {"home": "cats"}},
    ]


def compose_nine_tasks(tmp: Path, tiny_bert: Path, *overrides: str):
    """`experiment=ewt_ud` over write_task_corpora's files with two classification tasks more (bank, home):
    nine tasks on one encoder, composed as compose_train does, then `overrides`."""
    from omegaconf import open_dict

    write_task_corpora(tmp)
    cfg = compose_train(tmp, tiny_bert, "experiment=ewt_ud", *overrides)
    with open_dict(cfg):
        for split in ("train", "dev", "test"):
            cfg.data[split] = task_corpora(tmp, split)
        for task in ("bank", "home"):
            cfg.model.heads[task] = {
                "_target_": "polyhead.models.heads.textcat.TextClassificationHead",
                "_partial_": True,
            }
    return cfg
