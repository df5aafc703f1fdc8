"""Any corpus the readers understand -> a spaCy DocBin, e.g. for `python -m spacy evaluate`.

    python -m polyhead.export.convert ../shared/data/ud_en_ewt/en_ewt-ud-test.conllu test.spacy \\
        --format conllu --option tag_column=upos --option cat_from=sent_id_prefix
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin

from polyhead.data.datamodule import as_tasks
from polyhead.data.readers import read_corpus
from polyhead.data.schema import LEGACY_FIELDS, Example
from polyhead.models.heads.registry import HEADS, lookup_head
from polyhead.models.heads.tagger import TokenTaggingHead

Writers = dict[str, tuple[type, dict]]  # task -> (the head class that writes its gold, its options)


def to_doc(vocab, ex: Example, writers: Writers) -> Doc:
    """One Example as a Doc with the annotation it has, each task's head writing its own where its
    options say (tags on token.pos_ or another attribute, entities, categories, dependency trees)."""
    doc = Doc(vocab, words=ex.words, spaces=ex.spaces)
    for task, (head, options) in writers.items():
        if ex.has(task):
            head.write_gold(doc, ex.get(task), options)
    return doc


def to_docbin(examples: list[Example], lang: str = "en", writers: Writers | None = None) -> DocBin:
    """The examples as a DocBin; `writers` default to the tasks named after a head kind (legacy_writers)."""
    vocab = spacy.blank(lang).vocab
    writers = writers if writers is not None else legacy_writers(examples)
    return DocBin(docs=[to_doc(vocab, ex, writers) for ex in examples], store_user_data=True)


def gold_writers(examples: list[Example], heads: dict, tag_attr: str | None = None) -> Writers:
    """The writers of a model config's tasks (`heads`: task -> its head's config, with _target_): each
    task's head class and its spaCy options (the config's `attr` or `spans_key` over the class's own;
    `tag_attr`, export.tag_attr, for a plain tagger), categories over the labels the examples have."""
    writers = {}
    for task, spec in heads.items():
        cls = lookup_head({"class": spec["_target_"]})
        if cls is None:
            raise ValueError(f"model.heads.{task}: {spec['_target_']} is not a registered head class")
        options = {**cls.spacy_options, **{k: spec[k] for k in cls.spacy_options if k in spec}}
        if tag_attr is not None and cls is TokenTaggingHead:
            options["attr"] = tag_attr
        writers[task] = (cls, options | {"cat_labels": task_labels(examples, task)})
    return writers


def legacy_writers(examples: list[Example], tag_attr: str = "pos") -> Writers:
    """Writers for the tasks named after the head kind that learns them (tagger, ner, textcat, parser)."""
    writers = {}
    for task in sorted({task for ex in examples for task in ex.gold if task in HEADS}):
        options = {**HEADS[task].spacy_options, "cat_labels": task_labels(examples, task)}
        writers[task] = (
            HEADS[task],
            options | ({"attr": tag_attr} if HEADS[task] is TokenTaggingHead else {}),
        )
    return writers


def task_labels(examples: list[Example], task: str) -> list[str]:
    """The categories of a classification task in `examples` (doc.cats gets a score for each)."""
    return sorted(
        {c for ex in examples if ex.has(task) and ex.gold[task].kind == "cats" for c in ex.get(task)}
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("output")
    parser.add_argument("--format", required=True, help="conllu | columns | csv | jsonl | docbin")
    parser.add_argument("--option", action="append", default=[], help="reader option key=value, repeatable")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--tag-attr", default="pos", choices=["pos", "tag"])
    args = parser.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)
    for key in ("word_column", "tag_column"):  # column indices are integers for the columns reader
        if key in options and options[key].lstrip("-").isdigit():
            options[key] = int(options[key])
    examples = [as_tasks(ex, LEGACY_FIELDS) for ex in read_corpus(args.path, args.format, **options)]
    to_docbin(examples, args.lang, legacy_writers(examples, args.tag_attr)).to_disk(args.output)
    print(f"wrote {len(examples)} docs to {Path(args.output)}")


if __name__ == "__main__":
    main()
