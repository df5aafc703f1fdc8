"""Any corpus the readers understand -> a spaCy DocBin, e.g. for `python -m spacy evaluate`.

    python -m polyhead.export.convert ../shared/data/ud_en_ewt/en_ewt-ud-test.conllu test.spacy \\
        --format conllu --option tag_column=upos --option cat_from=sent_id_prefix

Named tasks, as a data config's `tasks` names them, each written where its head kind writes (the kind of
its annotation decides the head: tags, feats, lemmas, spans, cats, tree), `--set` choosing another place:

    python -m polyhead.export.convert ../shared/data/ud_en_ewt/en_ewt-ud-test.conllu test.spacy \\
        --format conllu --task upos=upos --task xpos=xpos --set xpos.attr=tag --task feats=feats \\
        --task lemma=lemma --task parser=tree --task genre=cats --option cat_from=sent_id_prefix
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin

from polyhead.data.datamodule import CorpusSpec, as_tasks
from polyhead.data.readers import read_corpus
from polyhead.data.schema import LEGACY_FIELDS, LEGACY_TASKS, Example
from polyhead.errors import UserError
from polyhead.models.heads.registry import HEADS, cats_clash, lookup_head, place_clash
from polyhead.models.heads.tagger import TokenTaggingHead

Writers = dict[str, tuple[type, dict]]  # task -> (the head class that writes its gold, its options)


def to_doc(vocab, ex: Example, writers: Writers) -> Doc:
    """One Example as a Doc with the annotation it has, each task's head writing its own where its
    options say (tags on token.pos_ or another attribute, entities, categories, dependency trees)."""
    doc = Doc(vocab, words=ex.words, spaces=ex.spaces)
    for task, (head, options) in writers.items():
        if ex.has(task):
            try:
                head.write_gold(doc, ex.get(task), options)
            except ValueError as err:  # spaCy's own check, e.g. a tag that is not UPOS written to token.pos
                raise UserError(f"{ex.source}: task {task!r}: {err}") from None
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


def named_writers(examples: list[Example], settings: dict[str, dict[str, str]]) -> Writers:
    """Writers for the examples' tasks, each by the registered head that learns its kind of annotation,
    its spaCy options over the head's own from `settings` (task -> {option: value}, `--set task.option=v`).
    Two tasks writing one place of the Doc, or an option the head does not have, are errors."""
    by_kind: dict[str, type] = {}
    for cls in HEADS.values():  # the first registered head of a kind (the built-in one) writes its gold
        by_kind.setdefault(cls.annotation, cls)
    kinds = {task: gold.kind for ex in examples for task, gold in ex.gold.items()}
    unknown = sorted(set(settings) - set(kinds))
    if unknown:
        have = ", ".join(kinds)
        raise UserError(f"--set {unknown[0]}.<option>: no task {unknown[0]!r} (the tasks: {have})")
    writers = {}
    for task, kind in kinds.items():
        cls = by_kind[kind]
        bad = sorted(set(settings.get(task, {})) - set(cls.spacy_options))
        if bad:
            have = ", ".join(cls.spacy_options) or "none"
            why = f"the {kind} task {task!r} has no option {bad[0]!r} ({have})"
            raise UserError(f"--set {task}.{bad[0]}: {why}")
        options = {**cls.spacy_options, **settings.get(task, {})}
        writers[task] = (cls, options | {"cat_labels": task_labels(examples, task)})
    clash = place_clash({task: cls.writes(options) for task, (cls, options) in writers.items()})
    if clash is not None:
        first, task, place = clash
        both = f"tasks {first!r} and {task!r} both write {place}"
        raise UserError(f"{both}: --set {task}.<option> another place")
    cats = {
        task: cls.prefixed(options["cat_labels"], options)
        for task, (cls, options) in writers.items()
        if cls.annotation == "cats"
    }
    clash = cats_clash(cats)
    if clash is not None:
        first, task, label = clash
        both = f"tasks {first!r} and {task!r} both have the label {label!r} in doc.cats"
        raise UserError(f"{both}: --set {task}.cats_prefix=<prefix>")
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
    help = "TASK=FIELD as a data config's tasks (upos=upos, ner=2:iob2), repeatable"
    parser.add_argument("--task", action="append", default=[], help=help)
    parser.add_argument("--set", action="append", default=[], help="TASK.OPTION=VALUE, e.g. xpos.attr=tag")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--tag-attr", default="pos", choices=["pos", "tag"])
    args = parser.parse_args(argv)
    try:
        examples, writers = read_for_docbin(args)
        docbin = to_docbin(examples, args.lang, writers)
    except (UserError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    docbin.to_disk(args.output)
    print(f"wrote {len(examples)} docs with {', '.join(writers) or 'no annotation'} to {Path(args.output)}")


def read_for_docbin(args) -> tuple[list[Example], Writers]:
    """The command line's corpus and its writers: named tasks (--task, or every task of a prepared JSONL
    file) each written by its kind's head; without --task, other formats' fields as the legacy tasks."""
    options = dict(pair(o, "--option", "KEY=VALUE") for o in args.option)
    for key in ("word_column", "tag_column"):  # column indices are integers for the columns reader
        if key in options and options[key].lstrip("-").isdigit():
            options[key] = int(options[key])
    tasks = dict(pair(t, "--task", "TASK=FIELD") for t in args.task)
    settings: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, value = pair(item, "--set", "TASK.OPTION=VALUE")
        task, dot, option = key.partition(".")
        if not dot or not option:
            raise UserError(f"--set {item}: expected TASK.OPTION=VALUE")
        settings.setdefault(task, {})[option] = value
    if not tasks and args.format != "jsonl":
        if settings:
            raise UserError("--set needs named tasks: give each with --task TASK=FIELD")
        examples = [as_tasks(ex, LEGACY_FIELDS) for ex in read_corpus(args.path, args.format, **options)]
        return examples, legacy_writers(examples, args.tag_attr)
    examples = CorpusSpec(args.path, args.format, tasks or None, options).read()
    tagger = LEGACY_TASKS["tags"]  # a tag task named after its head kind: --tag-attr unless --set says
    if any(ex.has(tagger) for ex in examples):
        settings.setdefault(tagger, {}).setdefault("attr", args.tag_attr)
    return examples, named_writers(examples, settings)


def pair(item: str, flag: str, form: str) -> tuple[str, str]:
    key, eq, value = item.partition("=")
    if not eq or not key:
        raise UserError(f"{flag} {item}: expected {form}")
    return key, value


if __name__ == "__main__":
    main()
