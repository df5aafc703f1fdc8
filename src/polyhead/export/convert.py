"""Any corpus the readers understand -> a spaCy DocBin, e.g. for `python -m spacy evaluate`.

    python -m polyhead.export.convert ../shared/data/ud_en_ewt/en_ewt-ud-test.conllu test.spacy \\
        --format conllu --option tag_column=upos --option cat_from=sent_id_prefix
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin

from polyhead.data.readers import read_corpus
from polyhead.data.schema import Example
from polyhead.models.heads.registry import HEADS


def to_doc(vocab, ex: Example, cat_labels: list[str], tag_attr: str = "pos") -> Doc:
    """One Example as a Doc with the annotation it has, each registered head writing its own (tags,
    entities, categories over `cat_labels`, dependency trees)."""
    doc = Doc(vocab, words=ex.words, spaces=ex.spaces)
    options = {"attr": tag_attr, "cat_labels": cat_labels}
    for head in HEADS.values():
        head.write_gold(doc, ex, options)
    return doc


def to_docbin(examples: list[Example], lang: str = "en", tag_attr: str = "pos") -> DocBin:
    vocab = spacy.blank(lang).vocab
    cat_labels = sorted({c for ex in examples for c in ex.cats or ()})
    return DocBin(docs=[to_doc(vocab, ex, cat_labels, tag_attr) for ex in examples], store_user_data=True)


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
    examples = read_corpus(args.path, args.format, **options)
    to_docbin(examples, args.lang, args.tag_attr).to_disk(args.output)
    print(f"wrote {len(examples)} docs to {Path(args.output)}")


if __name__ == "__main__":
    main()
