"""`python -m polyhead.prepare`: the configured corpora, read, joined and sampled exactly as training reads
them, written as one JSONL file per split (token offsets; a task a text lacks stays absent, i.e. masked),
test as a spaCy DocBin for `spacy evaluate`, and the source fingerprints. The DVC pipeline's first stage."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)
from polyhead.config import project_root
from polyhead.data.schema import Example
from polyhead.export.convert import gold_writers, to_docbin


def to_json(ex: Example) -> dict:
    """What the JSONL reader reads back: id, tokens, spaces and every task's annotation under its name,
    `tasks: {task: {kind: value}}` (tuples written as JSON lists); a JSONL corpus without `tasks` in its
    config feeds them all."""
    obj = {"id": ex.id, "tokens": ex.words, "spaces": ex.spaces}
    obj["tasks"] = {task: {kind: value} for task, (kind, value) in ex.gold.items()}
    return {k: v for k, v in obj.items() if v is not None}


def prepare(cfg: DictConfig) -> Path:
    out = Path(cfg.paths.prepared_dir)
    datamodule = instantiate(cfg.data)
    datamodule.load()  # bad corpora fail here, naming file and line, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    for split, examples in datamodule.examples.items():
        lines = [json.dumps(to_json(ex), ensure_ascii=False) for ex in examples]
        (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test = datamodule.examples["test"]
    writers = gold_writers(test, cfg.model.heads, cfg.export.get("tag_attr"))
    to_docbin(test, cfg.export.lang, writers).to_disk(out / "test.spacy")
    counts = {split: len(examples) for split, examples in datamodule.examples.items()}
    summary = {"examples": counts, "labels": datamodule.labels, "fingerprints": datamodule.fingerprints()}
    (out / "fingerprints.json").write_text(json.dumps(summary, indent=2))
    print(f"prepared {counts} in {out}")
    return out


@hydra.main(version_base="1.3", config_path=str(project_root() / "conf"), config_name="pipeline")
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
