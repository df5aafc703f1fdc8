"""Dependency trees: a biaffine arc scorer and relation classifier (Dozat & Manning 2017) over the word
vectors, decoded into one single-rooted tree per text by Chu-Liu-Edmonds (maximum spanning arborescence).

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

from polyhead.data.schema import Example, find_cycle
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.soft import kl_divergence, word_rows
from polyhead.models.heads.tagger import IGNORE

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


def mlp(hidden_size: int, size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden_size, size), nn.LeakyReLU(0.1), nn.Dropout(dropout))


class DependencyParsingHead(nn.Module):
    """`labels` are the dependency relations; targets are (head node, relation id) per word, IGNORE where a
    text has no tree or a word is padding. A text of more than `max_words` words is parsed as consecutive
    pieces of `max_words` words, one tree each: the scores grow with the square of a piece's length."""

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        arc_size: int = 256,
        label_size: int = 128,
        dropout: float = 0.1,
        max_words: int = 256,
    ):
        super().__init__()
        self.labels, self.max_words = list(labels), max_words
        self.config = {
            "hidden_size": hidden_size,
            "labels": self.labels,
            "arc_size": arc_size,
            "label_size": label_size,
            "dropout": dropout,
            "max_words": max_words,
        }
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.dropout = nn.Dropout(dropout)
        self.arc_dep, self.arc_head = mlp(hidden_size, arc_size, dropout), mlp(hidden_size, arc_size, dropout)
        self.arc_weight = nn.Parameter(torch.zeros(arc_size, arc_size))  # zero start, as Dozat & Manning
        self.arc_prior = nn.Linear(arc_size, 1, bias=False)  # how likely a node is to head anything
        self.label_dep = mlp(hidden_size, label_size, dropout)
        self.label_head = mlp(hidden_size, label_size, dropout)
        self.label_bilinear = nn.Bilinear(label_size, label_size, len(self.labels))
        self.label_linear = nn.Linear(2 * label_size, len(self.labels), bias=False)

    def forward(self, enc: EncoderOutput) -> ParserScores:  # (B, W, H) -> (B*K, C, C+1), ...
        size = min(enc.words.shape[1], self.max_words)
        words, mask = chunked(self.dropout(enc.words), size), chunked(enc.word_mask, size)
        chunks = words.shape[0] // enc.words.shape[0]
        root = self.dropout(enc.cls).repeat_interleave(chunks, 0).unsqueeze(1)
        nodes = torch.cat([root, words], 1)  # (B*K, C+1, H): each chunk's root first
        dep, head = self.arc_dep(words), self.arc_head(nodes)
        arcs = torch.einsum("bia,ac,bjc->bij", dep, self.arc_weight, head)
        arcs = arcs + self.arc_prior(head).transpose(1, 2)  # (B*K, C, C+1)
        arcs = arcs.masked_fill(impossible(mask), NEG)
        return ParserScores(arcs, self.label_dep(words), self.label_head(nodes), mask, chunks)

    def label_logits(self, scores: ParserScores, heads: torch.Tensor) -> torch.Tensor:  # -> (B*K, C, L)
        """Relation scores of each word given its head node in its chunk, (B*K, C): gold in training,
        predicted when decoding."""
        size = scores.label_heads.shape[-1]
        index = heads.clamp(min=0).unsqueeze(-1).expand(-1, -1, size)
        head, dep = scores.label_heads.gather(1, index), scores.label_deps  # (B*K, C, R) each
        return bilinear(dep, head, self.label_bilinear) + self.label_linear(torch.cat([dep, head], -1))

    def targets(self, examples: list[Example], width: int) -> torch.Tensor:
        """(head node, relation id) of each word; IGNORE for texts without a tree, padding.  # -> (B, W, 2)"""
        out = torch.full((len(examples), width, 2), IGNORE, dtype=torch.long)
        for i, ex in enumerate(examples):
            if ex.heads is not None:
                n = len(ex.heads)
                out[i, :n, 0] = torch.tensor(ex.heads, dtype=torch.long)
                out[i, :n, 1] = torch.tensor([self.index[d] for d in ex.deps], dtype=torch.long)
        return out

    def loss(self, scores: ParserScores, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the gold head among the chunk's nodes plus that of the gold relation at the gold
        head (a head in another chunk of an over-long text is left out)."""
        size = scores.word_mask.shape[1]
        heads = chunked(local_heads(targets[..., 0], size), size)  # (B*K, C)
        labels = chunked(targets[..., 1], size).masked_fill(heads == IGNORE, IGNORE)
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
        heads = torch.zeros(scores.word_mask.shape, dtype=torch.long)
        for b, n in enumerate(scores.word_mask.sum(-1).tolist()):
            if n:
                heads[b, :n] = torch.tensor(best_tree(arcs[b, :n, : n + 1]))
        heads = heads.to(scores.arcs.device)
        labels = self.label_logits(scores, heads).argmax(-1)
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
    spacy_scores = {"dep_uas": "uas", "dep_las": "las", "dep_las_per_type": "las_per_type"}

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
    def write_gold(doc, example: Example, options: dict) -> None:
        if example.heads is not None:
            set_tree(doc, list(range(len(doc))), example.heads, example.deps)

    def confusion_pairs(self, examples, options: dict) -> None:
        return None  # arcs, not one label per token: las_per_type says more


def bilinear(left: torch.Tensor, right: torch.Tensor, layer: nn.Bilinear) -> torch.Tensor:
    """`layer(left, right)` as one matrix product: nn.Bilinear's own kernel (aten::_trilinear) took 98% of
    the parser head's training time on an AVX2 AMD EPYC, and a 4-head step twice a 3-head one.
    # (..., R), (..., S) -> (..., L)"""
    out, r, s = layer.weight.shape  # (L, R, S)
    mixed = left @ layer.weight.transpose(0, 1).reshape(r, out * s)  # (..., L*S)
    scores = (mixed.unflatten(-1, (out, s)) * right.unsqueeze(-2)).sum(-1)
    return scores + layer.bias if layer.bias is not None else scores


def chunked(x: torch.Tensor, size: int) -> torch.Tensor:
    """Texts cut into pieces of `size` words, the last one padded.  # (B, W, ...) -> (B*K, size, ...)"""
    pad = -x.shape[1] % size
    if pad:
        x = torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], 1)
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


def best_tree(scores: np.ndarray) -> list[int]:
    """Head of every word in the best tree with exactly one root.  # (n, n+1) -> n heads in 0..n

    scores[i, j]: score of node j (0 = root, k = word k) as the head of word i + 1; higher is better."""
    n = scores.shape[0]
    graph = np.full((n + 1, n + 1), -np.inf)  # graph[d, h] over all nodes; the root has no head
    graph[1:] = scores
    np.fill_diagonal(graph, -np.inf)
    greedy = graph[1:].argmax(1).tolist()
    if greedy.count(0) == 1 and not find_cycle(greedy):
        return greedy  # each word's best head, and already a single-rooted tree
    finite = graph[np.isfinite(graph)]
    graph[1:, 0] -= (finite.max() - finite.min()) * (n + 1) + 1.0  # a second root arc never pays
    return chu_liu_edmonds(graph)[1:].tolist()


def chu_liu_edmonds(graph: np.ndarray) -> np.ndarray:
    """Maximum spanning arborescence rooted at node 0.  # (N, N) graph[d, h] -> (N,) heads, heads[0] = -1

    Every node takes its best head; a cycle among those choices is contracted into one node, whose incoming
    arcs are scored by what they gain over the cycle arc they break, and the smaller graph is solved the same
    way (a loop, not recursion: up to N - 1 contractions). Then each cycle, last first, is opened where the
    arc chosen into it enters."""
    contracted = []
    while True:
        heads = graph.argmax(1)
        heads[0] = -1
        cycle = find_cycle(heads[1:].tolist())
        if not cycle:
            break
        cyc = np.array(cycle[:-1])
        rest = np.setdiff1d(np.arange(len(graph)), cyc)  # sorted: rest[0] is the root, 0
        m = len(rest)
        small = np.full((m + 1, m + 1), -np.inf)
        small[:m, :m] = graph[np.ix_(rest, rest)]
        gain = graph[np.ix_(cyc, rest)] - graph[cyc, heads[cyc]][:, None]  # (|C|, m): head u enters at v
        small[m, :m], enter = gain.max(0), gain.argmax(0)
        leave = graph[np.ix_(rest[1:], cyc)]  # (m - 1, |C|): a cycle node heads a node outside
        small[1:m, m], leave = leave.max(1), leave.argmax(1)
        contracted.append((heads, cyc, rest, enter, leave))
        graph = small
    for outer, cyc, rest, enter, leave in reversed(contracted):
        inner, heads, m = heads, outer.copy(), len(rest)
        for i in range(1, m):
            heads[rest[i]] = rest[inner[i]] if inner[i] < m else cyc[leave[i - 1]]
        heads[cyc[enter[inner[m]]]] = rest[inner[m]]
    return heads


def set_tree(doc, index: list[int], heads: list[int], deps: list[str]) -> None:
    """Word k (1-based) is doc[index[k - 1]]; head 0 makes it a root. Tokens outside `index` (whitespace)
    hang from the word before them, or the first word, with relation SPACE_DEP."""
    from spacy.attrs import DEP, HEAD

    if not index:
        return
    absolute, labels = list(range(len(doc))), [SPACE_DEP] * len(doc)
    for token, head, dep in zip(index, heads, deps):
        absolute[token], labels[token] = (index[head - 1] if head else token), dep
    words, last = set(index), index[0]
    for i in range(len(doc)):
        if i in words:
            last = i
        else:
            absolute[i] = last
    # relative heads are signed (spaCy reads them from uint64 two's complement); label hashes are uint64
    # and may exceed int64's range, so the two columns are built apart
    relative = np.array([absolute[i] - i for i in range(len(doc))], dtype="int64").view("uint64")
    hashes = np.array([doc.vocab.strings.add(label) for label in labels], dtype="uint64")
    doc.from_array([HEAD, DEP], np.stack([relative, hashes], axis=1))
