"""Lemmas as edit scripts (polyhead.data.edit_scripts): one label per word says how its form becomes its
lemma, as spaCy's edit_tree_lemmatizer and UDPipe learn them, so a lemma never seen in training is still
reachable ("tweeted" -> "tweet" by the script of "walked" -> "walk")."""

from __future__ import annotations

import torch

from polyhead.data.edit_scripts import apply_script
from polyhead.data.schema import Example, lemma_scripts
from polyhead.models.heads.tagger import TokenTaggingHead


class LemmatizerHead(TokenTaggingHead):
    """`labels` are the edit scripts of the training words. Decoding takes the best-scoring script that fits
    the word (its cut strings are there), among the `top_k` best; where none fits, the lemma is the form.
    `surface` (0: none): the width of the form features (models.surface) it reads beside the word vector;
    `surface_shape`: with the word's written shape among them ("ddd,ddd": a number that loses its commas)."""

    annotation = "lemmas"
    added_settings = {"surface": 0, "surface_shape": False}  # heads saved before the form features, the shape

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        dropout: float = 0.1,
        top_k: int = 5,
        surface: int = 64,
        surface_shape: bool = True,
    ):
        super().__init__(
            hidden_size, labels, dropout, attr="lemma", surface=surface, surface_shape=surface_shape
        )
        self.top_k = top_k

    def word_labels(self, example: Example) -> list[str | None] | None:
        lemmas = example.get(self.task)
        return None if lemmas is None else lemma_scripts(example.words, lemmas)

    def decode(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[list[str]]:
        """The scripts (not yet lemmas: the words are not here) of the best fitting labels; see lemmas()."""
        k = min(self.top_k, len(self.labels))
        best = logits.topk(k, dim=-1).indices.tolist()  # (B, W, k)
        return [
            [[self.labels[j] for j in word] for word in row[: int(n)]]
            for row, n in zip(best, word_mask.sum(-1))
        ]

    def metric(self):
        from torchmetrics import MeanMetric, MetricCollection  # training only

        return MetricCollection({"acc": MeanMetric()})  # exact lemma match per annotated word

    def update_metric(self, metric, logits, targets, word_mask, examples) -> None:
        """Lemma accuracy: the lemma decoding makes of each annotated word against its gold lemma."""
        if not any(ex.has(self.task) for ex in examples):
            return
        hits = [
            float(lemma(word, scripts) == gold)
            for ex, row in zip(examples, self.decode(logits, word_mask))
            if ex.has(self.task)
            for word, scripts, gold in zip(ex.words, row, ex.get(self.task))
            if gold is not None
        ]
        if hits:
            metric["acc"].update(torch.tensor(hits))

    def as_gold(self, candidates: list[list[str]], words: list[str]) -> list[str]:
        return [lemma(word, scripts) for word, scripts in zip(words, candidates)]

    # spaCy side (as spaCy's edit_tree_lemmatizer): token.lemma_
    spacy_options: dict = {"attr": "lemma"}

    def set_annotations(self, doc, candidates: list[list[str]], index: list[int], options: dict) -> None:
        lemmas = [lemma(doc[i].text, scripts) for i, scripts in zip(index, candidates)]
        super().set_annotations(doc, lemmas, index[: len(lemmas)], options)


def lemma(form: str, scripts: list[str]) -> str:
    """The lemma of the first script in `scripts` that fits `form`; the form itself when none does."""
    for script in scripts:
        found = apply_script(script, form)
        if found is not None:
            return found
    return form
