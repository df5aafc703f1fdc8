"""Morphological features (UD FEATS) per word: one label per feature bundle ("Number=Sing|Person=3", "_" for
none), as spaCy's morphologizer predicts them; the exported component sets token.morph and `spacy evaluate`
adds per-feature scores."""

from __future__ import annotations

from polyhead.models.heads.tagger import IGNORE, TokenTaggingHead, score_getter


class MorphologizerHead(TokenTaggingHead):
    """A tagger over whole feature bundles: a bundle never seen in training cannot be predicted (22 words
    of EWT's dev and test sets have one), which is what a per-feature factoring would buy."""

    annotation = "feats"

    def __init__(self, hidden_size: int, labels: list[str], dropout: float = 0.1, surface: int = 0):
        super().__init__(hidden_size, labels, dropout, attr="morph", surface=surface)

    spacy_options: dict = {"attr": "morph"}

    def metric(self):
        from torchmetrics import MeanMetric, MetricCollection  # training only

        return MetricCollection({"acc": MeanMetric()})  # a bundle training lacks counts as wrong

    def update_metric(self, metric, logits, targets, word_mask, examples) -> None:
        keep = targets != IGNORE
        if keep.any():
            metric["acc"].update((logits.argmax(-1) == targets)[keep].float())

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import Scorer

        scores = super().score(examples, options, **kwargs)  # morph_acc
        return scores | Scorer.score_token_attr_per_feat(
            examples, "morph", getter=score_getter("morph"), **kwargs
        )
