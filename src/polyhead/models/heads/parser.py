"""Dependency trees: a biaffine arc scorer and relation classifier (Dozat & Manning 2017; the relations
optionally scored by a diagonal bilinear form, `relation="diagonal"`: 3 x label_size multiply-adds per
relation and word instead of label_size^2) over the word vectors, decoded into one single-rooted tree per
text by Chu-Liu-Edmonds (maximum spanning arborescence).

Nodes are numbered as CoNLL-U numbers them: node 0 is the root (the text's [CLS] vector stands for it), node
k the k-th word. `arcs[b, i, j]` scores node j of text (or piece of a long text) b as the head of its word
i + 1.

Why Chu-Liu-Edmonds and not Eisner: UD treebanks have non-projective trees (crossing arcs; a few percent of
EWT's sentences), which Eisner's projective decoder can never output. CLE finds the best tree of any shape;
a penalty on every root arc larger than any difference in tree scores makes the best tree the best one with
exactly one root. When each word's best head already forms such a tree (the usual case once trained), that
is the answer and CLE is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polyhead.data.schema import Example
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.base import HeadModule
from polyhead.models.heads.soft import kl_divergence, word_rows
from polyhead.models.heads.tagger import IGNORE
from polyhead.models.heads.trees import best_tree, best_trees  # noqa: F401  (best_tree: one text)

RELATION_SCORERS = ("biaffine", "diagonal")
NEG = -1e4  # score of an impossible head (padding, the word itself): finite so that sums stay finite
SPACE_DEP = "dep"  # relation of a whitespace token (it has no vector), attached to the word before it


@dataclass
class ParserScores:
    """The head's forward output over chunks of at most `max_words` words (one chunk per text that fits)."""

    arcs: torch.Tensor  # (B*K, C, C+1) score of chunk node j as the head of the chunk's word i + 1
    label_deps: torch.Tensor  # (B*K, C, R) words as dependents
    label_heads: torch.Tensor  # (B*K, C+1, R) nodes (root first) as heads
    word_mask: torch.Tensor  # (B*K, C)
    chunks: int  # K: pieces each text was cut into


def projection(hidden_size: int, size: int) -> nn.Sequential:
    """The Linear layer of one of the parser's four MLPs (`DependencyParsingHead.project` adds the rest), in
    a Sequential so that its weights keep the names they are saved under (arc_dep.0.weight)."""
    return nn.Sequential(nn.Linear(hidden_size, size))


class DependencyParsingHead(HeadModule):
    """`labels` are the dependency relations; targets are (head node, relation id) per word, IGNORE where a
    text has no tree or a word is padding. A text of more than `max_words` words is parsed as consecutive
    pieces of `max_words` words, one tree each: the scores grow with the square of a piece's length."""

    annotation = "tree"  # the kind of annotation it learns from (polyhead.data.schema.KINDS)
    task = ""  # the task whose annotation it learns: MultitaskModel names it
    added_settings = {"relation": "biaffine"}  # every parser saved before the option had the biaffine one

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        arc_size: int = 256,
        label_size: int = 128,
        dropout: float = 0.1,
        max_words: int = 256,
        relation: str = "biaffine",
    ):
        """`relation` is the relation scorer over the label projections of a word and its head: "biaffine"
        (Dozat & Manning: a label_size x label_size matrix per relation, plus a linear term) or "diagonal"
        (one weight per relation and dimension on their elementwise product, plus the same linear term):
        per word R x R x L multiply-adds (per distinct head node when decoding) against 3 x R x L."""
        super().__init__()
        if relation not in RELATION_SCORERS:
            raise ValueError(
                f"parser relation must be one of {', '.join(RELATION_SCORERS)}, got {relation!r}"
            )
        self.relation = relation
        self.labels, self.max_words = list(labels), max_words
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.dropout = nn.Dropout(dropout)
        self.arc_dep, self.arc_head = projection(hidden_size, arc_size), projection(hidden_size, arc_size)
        self.arc_weight = nn.Parameter(torch.zeros(arc_size, arc_size))  # zero start, as Dozat & Manning
        self.arc_prior = nn.Linear(arc_size, 1, bias=False)  # how likely a node is to head anything
        self.label_dep = projection(hidden_size, label_size)
        self.label_head = projection(hidden_size, label_size)
        if relation == "biaffine":
            self.label_bilinear = nn.Bilinear(label_size, label_size, len(self.labels))
        else:
            self.label_diagonal = nn.Linear(label_size, len(self.labels))  # w_l . (dep * head) + b_l
        self.label_linear = nn.Linear(2 * label_size, len(self.labels), bias=False)
        # the four projections and label_bilinear as Linear layers, for an int8 copy: `as_linears`
        self.projections: nn.Linear | None = None
        self.head_side: nn.Linear | None = None

    def as_linears(self) -> list[str]:
        """Give the head's large products the form of Linear layers and name them, for an int8 copy of it
        (polyhead.export.quantize.quantize_head): `projections`, the four MLPs' Linear layers as one (its
        input quantized once, not four times), and `head_side`, which maps a head node's label vector to its
        (L, R) matrix of label_bilinear (the diagonal scorer has no such product). The narrow layers
        (arc_prior, label_linear, label_diagonal) are left out. Not saved: a copy's own, built from the
        weights; the head scores the same with or without them."""
        weight, bias = self.joined_projections()
        self.projections = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.projections.weight.copy_(weight)
            self.projections.bias.copy_(bias)
        if self.relation != "biaffine":
            return ["projections"]
        out, r, s = self.label_bilinear.weight.shape
        self.head_side = nn.Linear(s, out * r, bias=False)
        with torch.no_grad():
            self.head_side.weight.copy_(self.label_bilinear.weight.reshape(out * r, s))
        return ["projections", "head_side"]

    def forward(self, enc: EncoderOutput) -> ParserScores:  # (B, W, H) -> (B*K, C, C+1), ...
        size = min(enc.words.shape[1], self.max_words)
        words, mask = chunked(self.dropout(enc.words), size), chunked(enc.word_mask, size)
        chunks = words.shape[0] // enc.words.shape[0]
        root = self.dropout(enc.cls).repeat_interleave(chunks, 0).unsqueeze(1)
        nodes = torch.cat([root, words], 1)  # (B*K, C+1, H): each chunk's root first
        dep, head, label_dep, label_head = self.project(nodes)
        dep, label_dep = dep[:, 1:], label_dep[:, 1:]  # words only as dependents
        arcs = torch.einsum("bia,ac,bjc->bij", dep, self.arc_weight, head)
        arcs = arcs + self.arc_prior(head).transpose(1, 2)  # (B*K, C, C+1)
        arcs = arcs.masked_fill(impossible(mask), NEG)
        return ParserScores(arcs, label_dep, label_head, mask, chunks)

    def mlps(self) -> tuple[nn.Sequential, ...]:
        return self.arc_dep, self.arc_head, self.label_dep, self.label_head

    def joined_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The four MLPs' Linear weights and biases stacked, in `mlps` order.  # (2A + 2R, H), (2A + 2R,)"""
        layers = [m[0] for m in self.mlps()]
        return torch.cat([m.weight for m in layers]), torch.cat([m.bias for m in layers])

    def project(self, nodes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The four MLPs (arc dependent, arc head, label dependent, label head) over every node as one
        matrix product, then LeakyReLU and dropout.  # (..., H) -> 4 x (..., size)"""
        if self.projections is not None:
            out = self.projections(nodes)
        else:
            out = nn.functional.linear(nodes, *self.joined_projections())
        out = self.dropout(nn.functional.leaky_relu(out, 0.1))
        return out.split([m[0].out_features for m in self.mlps()], -1)

    def label_logits(
        self, scores: ParserScores, heads: torch.Tensor, words_only: bool = False
    ) -> torch.Tensor:  # -> (B*K, C, L)
        """Relation scores of each word given its head node in its chunk, (B*K, C): gold in training,
        predicted when decoding. words_only scores the chunks' words alone (0 at padding), the biaffine
        scorer once per head node rather than per word (`bilinear_by_head`): it costs L x R x S a position."""
        if words_only:
            mask, nodes = scores.word_mask, scores.label_heads  # nodes: (B*K, C+1, R)
            rows = torch.arange(len(heads), device=heads.device).unsqueeze(1) * nodes.shape[1]
            which = (heads.clamp(min=0) + rows)[mask]  # each word's head among the flattened nodes
            dep, nodes = scores.label_deps[mask], nodes.flatten(0, 1)
            pair = None  # the diagonal form is cheap per word
            if self.relation == "biaffine":  # (N words, L)
                pair = bilinear_by_head(dep, nodes, which, self.label_bilinear, self.head_side)
            logits = self.relation_scores(dep, nodes[which], pair)
            return logits.new_zeros(*mask.shape, logits.shape[-1]).index_put((mask,), logits)
        size = scores.label_heads.shape[-1]
        index = heads.clamp(min=0).unsqueeze(-1).expand(-1, -1, size)
        head, dep = scores.label_heads.gather(1, index), scores.label_deps  # (B*K, C, R) each
        return self.relation_scores(dep, head)

    def relation_scores(
        self, dep: torch.Tensor, head: torch.Tensor, pair: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of every relation for dependents and their heads: the pair term (given, or computed here)
        plus the linear one.  # (..., R), (..., R) -> (..., L)"""
        if pair is None:
            biaffine = self.relation == "biaffine"
            pair = bilinear(dep, head, self.label_bilinear) if biaffine else self.label_diagonal(dep * head)
        return pair + self.label_linear(torch.cat([dep, head], -1))

    def targets(self, examples: list[Example], width: int) -> torch.Tensor:
        """(head node, relation id) of each word; IGNORE for texts without a tree, padding.  # -> (B, W, 2)"""
        out = torch.full((len(examples), width, 2), IGNORE, dtype=torch.long)
        for i, ex in enumerate(examples):
            if ex.has(self.task):
                heads, deps = ex.get(self.task)
                out[i, : len(heads), 0] = torch.tensor(heads, dtype=torch.long)
                out[i, : len(heads), 1] = torch.tensor([self.index[d] for d in deps], dtype=torch.long)
        return out

    def loss(self, scores: ParserScores, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the gold head among the chunk's nodes plus that of the gold relation at the gold
        head (a head in another chunk of an over-long text is left out)."""
        size = scores.word_mask.shape[1]
        heads = chunked(local_heads(targets[..., 0], size), size, IGNORE)  # (B*K, C); padding adds no loss
        labels = chunked(targets[..., 1], size, IGNORE).masked_fill(heads == IGNORE, IGNORE)
        arc_loss = nn.functional.cross_entropy(
            scores.arcs.flatten(0, 1).float(), heads.flatten(), ignore_index=IGNORE
        )
        label_logits = self.label_logits(scores, heads)
        label_loss = nn.functional.cross_entropy(
            label_logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE
        )
        return arc_loss + label_loss

    def predict(self, scores: ParserScores, word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head (0 = root, k = word k) and relation id of every word, from the best single-rooted tree of
        each chunk.  # -> (B, W), (B, W)"""
        arcs = torch.log_softmax(scores.arcs.detach().float(), -1).double().cpu().numpy()
        lengths = scores.word_mask.sum(-1).cpu().numpy()
        heads = torch.from_numpy(best_trees(arcs, lengths)).to(scores.arcs.device)
        labels = self.label_logits(scores, heads, words_only=True).argmax(-1)  # relation 0 at padding
        batch, width = word_mask.shape
        offset = (torch.arange(heads.shape[0], device=heads.device) % scores.chunks) * heads.shape[1]
        heads = torch.where(heads > 0, heads + offset.unsqueeze(1), 0)  # chunk node -> word number
        return heads.reshape(batch, -1)[:, :width], labels.reshape(batch, -1)[:, :width]

    def decode(self, scores: ParserScores, word_mask: torch.Tensor) -> list[list[tuple[int, str]]]:
        """(head, relation) of every word of every text; head 0 is the root, k the k-th word."""
        heads, labels = self.predict(scores, word_mask)
        return [
            [(h, self.labels[r]) for h, r in zip(hs[:n], rs[:n])]
            for hs, rs, n in zip(heads.tolist(), labels.tolist(), word_mask.sum(-1).tolist())
        ]

    # What a teacher gives a student: per word, a distribution over its head and one over its relation
    soft_kind = "word"
    soft_decodes = False  # its rows are not the scores decode reads: no hard labels from them

    def soft_targets(self, scores: ParserScores, word_mask: torch.Tensor) -> list[torch.Tensor]:
        """Per text, (n, max_words + 1 + R): each word's arc scores over its piece's root and words (NEG
        beyond them), then its relation scores at the teacher's best head."""
        arcs = scores.arcs.float()  # (B*K, C, C+1)
        labels = self.label_logits(scores, arcs.argmax(-1)).float()  # (B*K, C, R)
        arcs = nn.functional.pad(arcs, (0, self.max_words + 1 - arcs.shape[-1]), value=NEG)
        rows = torch.cat([arcs, labels], -1)
        return word_rows(rows.reshape(word_mask.shape[0], -1, rows.shape[-1]), word_mask)

    def soft_loss(self, scores: ParserScores, teacher: torch.Tensor, mask: torch.Tensor, temperature: float):
        """KL to the teacher's head distribution of each word plus KL to its relation distribution, the
        student's relation scored at the teacher's best head.  # teacher (B, W, max_words + 1 + R)"""
        (batch, width), nodes, relations = mask.shape, scores.arcs.shape[-1], len(self.labels)
        arcs, theirs = scores.arcs.reshape(batch, -1, nodes)[:, :width], teacher[..., :nodes]
        heads = chunked(theirs.argmax(-1), nodes - 1)  # (B*K, C): the teacher's best head, chunk-local
        labels = self.label_logits(scores, heads).reshape(batch, -1, relations)[:, :width]
        arc = kl_divergence(arcs[mask], theirs[mask], temperature)
        return arc + kl_divergence(labels[mask], teacher[..., -relations:][mask], temperature)

    def metric(self):
        from torchmetrics import MetricCollection  # training only, not needed by the exported runtime
        from torchmetrics.aggregation import MeanMetric

        # every word counts, punctuation too (CoNLL 2018 shared task); compute groups would merge the two
        # means whenever their first batch agreed
        return MetricCollection({"uas": MeanMetric(), "las": MeanMetric()}, compute_groups=False)

    def update_metric(self, metric, scores, targets, word_mask, examples) -> None:
        keep = targets[..., 0] != IGNORE
        if keep.any():
            heads, labels = self.predict(scores, word_mask)
            attached = heads == targets[..., 0]
            metric["uas"].update(attached[keep].float())
            metric["las"].update((attached & (labels == targets[..., 1]))[keep].float())

    # spaCy side (as spaCy's DependencyParser): token.head and token.dep_, sentence boundaries follow
    spacy_options: dict = {}

    @staticmethod
    def score_names(options: dict) -> dict[str, str]:
        return {"dep_uas": "uas", "dep_las": "las", "dep_las_per_type": "las_per_type"}

    def as_gold(self, arcs: list[tuple[int, str]], words: list[str]) -> tuple[list[int], list[str]]:
        return [h for h, _ in arcs], [r for _, r in arcs]

    @staticmethod
    def writes(options: dict) -> str | None:
        return "token.head"

    def set_annotations(self, doc, arcs: list[tuple[int, str]], index: list[int], options: dict) -> None:
        """One tree over the Doc's words; whitespace tokens hang from the word before them."""
        set_tree(doc, index, [h for h, _ in arcs], [d for _, d in arcs])

    def score(self, examples, options: dict, **kwargs) -> dict:
        """dep_uas, dep_las (every word, punctuation included: CoNLL 2018), dep_las_per_type, sents_p/r/f."""
        from spacy.scorer import Scorer

        def has_sents(doc) -> bool:
            return doc.has_annotation("SENT_START")

        def relation(token, attr: str) -> str:  # as spaCy's parser scores: case-insensitive
            return token.vocab.strings.as_string(getattr(token, attr)).lower()

        scores = Scorer.score_spans(examples, "sents", has_annotation=has_sents, **kwargs)
        del scores["sents_per_type"]
        kwargs.setdefault("getter", relation)
        return scores | Scorer.score_deps(examples, "dep", ignore_labels=(), **kwargs)

    @staticmethod
    def write_gold(doc, tree: tuple[list[int], list[str]], options: dict) -> None:
        set_tree(doc, list(range(len(doc))), *tree)

    def confusion_pairs(self, examples, options: dict) -> None:
        return None  # arcs, not one label per token: las_per_type says more


def bilinear(left: torch.Tensor, right: torch.Tensor, layer: nn.Bilinear) -> torch.Tensor:
    """`layer(left, right)` as one matrix product: nn.Bilinear's own kernel (aten::_trilinear) took 98% of
    the parser head's training time on an AVX2 AMD EPYC, and a 4-head step twice a 3-head one.
    # (..., R), (..., S) -> (..., L)"""
    out, r, s = layer.weight.shape  # (L, R, S)
    mixed = left @ layer.weight.transpose(0, 1).reshape(r, out * s)  # (..., L*S)
    # a batched matrix-vector product: no (..., L, S) temporary of the elementwise product
    scores = (mixed.unflatten(-1, (out, s)) @ right.unsqueeze(-1)).squeeze(-1)
    return scores + layer.bias if layer.bias is not None else scores


def bilinear_by_head(
    dep: torch.Tensor, nodes: torch.Tensor, which: torch.Tensor, layer: nn.Bilinear, head_side=None
) -> torch.Tensor:
    """`bilinear(dep, nodes[which], layer)` with each head node's side taken once: a node heads several
    words (on EWT test, 38 distinct heads per 100 words), and contracting the weights with a head's vector
    first leaves one (L, R) matrix per head for its dependents, side by side in one padded batch. Equal to
    the per-word product up to float rounding. `head_side`, where given, computes the heads' side (layer's
    weights as a Linear S -> L*R, `DependencyParsingHead.as_linears`; int8 in an int8 copy).
    # (N, R) words, (M, S) nodes, (N,) node of each word -> (N, L)"""
    out, r, s = layer.weight.shape  # (L, R, S)
    bias = layer.bias if layer.bias is not None else 0
    if not len(which):
        return dep.new_zeros(0, out) + bias
    used, which = torch.unique(which, return_inverse=True)
    if head_side is None:
        mixed = nodes[used] @ layer.weight.permute(2, 0, 1).reshape(s, out * r)
    else:
        mixed = head_side(nodes[used])
    mixed = mixed.unflatten(-1, (out, r))  # (U, L, R)
    counts = torch.bincount(which, minlength=len(used))  # dependents per head
    order = torch.argsort(which, stable=True)
    slot = torch.empty_like(which)  # each word's place among its head's dependents
    slot[order] = torch.arange(len(which), device=which.device) - (counts.cumsum(0) - counts)[which[order]]
    grouped = dep.new_zeros(len(used), int(counts.max()), r)
    grouped[which, slot] = dep
    return (grouped @ mixed.transpose(1, 2))[which, slot] + bias  # (U, k, R) @ (U, R, L)


def chunked(x: torch.Tensor, size: int, fill: int = 0) -> torch.Tensor:
    """Texts cut into pieces of `size` words, the last one padded with `fill` (IGNORE for targets).
    # (B, W, ...) -> (B*K, size, ...)"""
    pad = -x.shape[1] % size
    if pad:
        x = torch.cat([x, x.new_full((x.shape[0], pad, *x.shape[2:]), fill)], 1)
    return x.reshape(-1, size, *x.shape[2:])


def local_heads(heads: torch.Tensor, size: int) -> torch.Tensor:
    """Gold heads as nodes of each word's chunk of `size` words: the root stays 0, a head in another chunk
    becomes IGNORE.  # (B, W) -> (B, W)"""
    chunk = torch.arange(heads.shape[1], device=heads.device) // size  # (W,)
    local = heads - chunk * size
    same = torch.div(heads - 1, size, rounding_mode="floor") == chunk
    return torch.where(heads == 0, 0, torch.where(same & (heads > 0), local, IGNORE))


def impossible(word_mask: torch.Tensor) -> torch.Tensor:
    """Heads no word may take: padding nodes and the word itself.  # (B, W) -> (B, W, W+1)"""
    batch, width = word_mask.shape
    nodes = torch.cat([word_mask.new_ones(batch, 1), word_mask], 1)  # (B, W+1)
    words = torch.arange(width, device=word_mask.device)
    itself = (words.unsqueeze(1) + 1) == torch.arange(width + 1, device=word_mask.device)  # (W, W+1)
    return ~nodes.unsqueeze(1) | itself


def set_tree(doc, index: list[int], heads: list[int], deps: list[str]) -> None:
    """Word k (1-based) is doc[index[k - 1]]; head 0 makes it a root. Tokens outside `index` (whitespace)
    hang from the word before them, or the first word, with relation SPACE_DEP. One Doc.from_array for
    the whole tree."""
    from spacy.attrs import DEP, HEAD

    if not index:
        return
    n, m = len(doc), min(len(index), len(heads), len(deps))  # as zip(index, heads, deps) pairs them
    strings = doc.vocab.strings
    ids = {dep: strings.add(dep) for dep in dict.fromkeys(deps[:m])}
    labels = [ids[dep] for dep in deps[:m]]
    # relative heads are signed (spaCy reads them from uint64 two's complement); label hashes are uint64
    # and may exceed int64's range, so the two columns are built apart
    columns = np.empty((n, 2), dtype="uint64")
    if m == n:  # every token a word (index rises, so it is 0..n-1): plain lists, a few numpy calls
        relative = [h - 1 - i if h > 0 else 0 for i, h in enumerate(heads[:m])]
        columns[:, 0] = np.array(relative, dtype="int64").view("uint64")
        columns[:, 1] = labels
        doc.from_array([HEAD, DEP], columns)
        return
    positions, words = np.arange(n), np.asarray(index, dtype=np.int64)
    is_word = np.zeros(n, dtype=bool)
    is_word[words] = True
    absolute = np.maximum.accumulate(np.where(is_word, positions, -1))  # the last word at or before
    absolute[absolute < 0] = words[0]  # whitespace before any word: the first word
    given, head = words[:m], np.asarray(heads[:m], dtype=np.int64)
    absolute[given] = np.where(head > 0, words[head - 1], given)
    columns[:, 0] = (absolute - positions).astype("int64").view("uint64")
    spaces = np.ones(n, dtype=bool)
    spaces[given] = False
    if spaces.any():
        columns[spaces, 1] = strings.add(SPACE_DEP)
    columns[given, 1] = labels
    doc.from_array([HEAD, DEP], columns)
