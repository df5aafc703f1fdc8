"""Batched decoding and bulk Doc writing equal the per-example, per-token code they replaced (kept here as
the reference): NER's Viterbi, the parser's trees and relations, and what tagger, ner and parser set on a
Doc, on random inputs with ties, empty texts, over-long texts and whitespace tokens."""

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Span

from polyhead.data.schema import find_cycle
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.ner import EntityRecognitionHead, viterbi
from polyhead.models.heads.parser import SPACE_DEP, DependencyParsingHead, set_tree
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.heads.trees import best_tree, best_trees, single_rooted_trees

UPOS = ["ADJ", "ADP", "DET", "NOUN", "PROPN", "PUNCT", "VERB"]
RELATIONS = ["nsubj", "obj", "punct", "root", "det:predet", "ROOT", "dep"]


# --- the reference: the code before issue 23, per example and per token ---


def viterbi_reference(emissions, lengths, transitions, starts, ends) -> list[list[int]]:
    batch, width, n_labels = emissions.shape
    score = emissions[:, 0] + starts
    back = []
    for t in range(1, width):
        total = score.unsqueeze(2) + transitions.unsqueeze(0)
        best, arg = total.max(1)
        active = (t < lengths).unsqueeze(1)
        score = torch.where(active, best + emissions[:, t], score)
        back.append(arg)
    paths = []
    for b in range(batch):
        n = int(lengths[b])
        if n == 0:
            paths.append([])
            continue
        tag = int((score[b] + ends).argmax())
        path = [tag]
        for t in range(n - 1, 0, -1):
            tag = int(back[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


def bilinear_reference(left, right, layer):
    out, r, s = layer.weight.shape
    mixed = left @ layer.weight.transpose(0, 1).reshape(r, out * s)
    scores = (mixed.unflatten(-1, (out, s)) * right.unsqueeze(-2)).sum(-1)
    return scores + layer.bias if layer.bias is not None else scores


def label_logits_reference(parser, scores, heads):
    size = scores.label_heads.shape[-1]
    index = heads.clamp(min=0).unsqueeze(-1).expand(-1, -1, size)
    head, dep = scores.label_heads.gather(1, index), scores.label_deps
    if parser.relation == "diagonal":
        pair = torch.einsum("...r,...r,lr->...l", dep, head, parser.label_diagonal.weight)
        pair = pair + parser.label_diagonal.bias
    else:
        pair = bilinear_reference(dep, head, parser.label_bilinear)
    return pair + parser.label_linear(torch.cat([dep, head], -1))


def predict_reference(parser, scores, word_mask):
    arcs = torch.log_softmax(scores.arcs.detach().float(), -1).double().cpu().numpy()
    heads = torch.zeros(scores.word_mask.shape, dtype=torch.long)
    for b, n in enumerate(scores.word_mask.sum(-1).tolist()):
        if n:
            heads[b, :n] = torch.tensor(best_tree(arcs[b, :n, : n + 1]))
    logits = label_logits_reference(parser, scores, heads)
    labels = logits.argmax(-1)
    batch, width = word_mask.shape
    offset = (torch.arange(heads.shape[0]) % scores.chunks) * heads.shape[1]
    heads = torch.where(heads > 0, heads + offset.unsqueeze(1), 0)
    return heads.reshape(batch, -1)[:, :width], labels.reshape(batch, -1)[:, :width], logits


def set_tree_reference(doc, index, heads, deps) -> None:
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
    relative = np.array([absolute[i] - i for i in range(len(doc))], dtype="int64").view("uint64")
    hashes = np.array([doc.vocab.strings.add(label) for label in labels], dtype="uint64")
    doc.from_array([HEAD, DEP], np.stack([relative, hashes], axis=1))


def tagger_reference(doc, labels, index, options) -> None:
    for i, label in zip(index, labels):
        setattr(doc[i], f"{options['attr']}_", label)


def ner_reference(doc, spans, index, options) -> None:
    doc.ents = [Span(doc, index[s], index[e - 1] + 1, label=label) for s, e, label in spans]


# --- random inputs ---


def random_emissions(rng: np.random.Generator, batch: int, width: int, n_labels: int) -> torch.Tensor:
    """Gaussian at several scales, or few distinct values (many tied paths)."""
    if rng.integers(3) == 0:
        values = rng.integers(0, 3, size=(batch, width, n_labels)).astype("float32")
    else:
        values = rng.normal(size=(batch, width, n_labels)) * rng.choice([0.1, 3.0, 30.0])
    return torch.log_softmax(torch.tensor(values, dtype=torch.float32), -1)


def random_lengths(rng: np.random.Generator, batch: int, width: int) -> torch.Tensor:
    """Lengths up to width; 0 and 1 are frequent."""
    lengths = rng.integers(0, width + 1, size=batch)
    lengths[rng.random(batch) < 0.2] = rng.integers(0, 2)
    return torch.tensor(lengths)


def random_doc(rng: np.random.Generator, nlp, n_words: int):
    """A Doc of words with whitespace tokens before, between and after them (as the tokenizer makes)."""
    pieces = [str(rng.choice(["\n", "  ", "\t", "\n\n"])) if rng.random() < 0.3 else ""]
    for _ in range(n_words):
        pieces.append(str(rng.choice(["Ann", "saw", "Rome", ".", "the", "cats", "42"])))
        pieces.append(str(rng.choice([" ", " ", " ", "  ", " \n ", "\n\n", "   "])))
    doc = nlp.make_doc("".join(pieces))
    return doc, [t.i for t in doc if not t.is_space]


def doc_state(doc) -> tuple:
    """Everything the heads may set, read back through spaCy's own views."""
    tokens = [
        (t.pos_, t.tag_, t.head.i, t.dep_, t.is_sent_start, t.ent_iob_, t.ent_type_, t.left_edge.i)
        for t in doc
    ]
    sents = [(s.start, s.end) for s in doc.sents] if doc.has_annotation("DEP") else None
    ents = [(e.start, e.end, e.label_) for e in doc.ents]
    flags = [doc.has_annotation(a) for a in ("POS", "TAG", "DEP", "SENT_START", "ENT_IOB")]
    return tokens, sents, ents, flags, doc.to_bytes()


# --- NER ---


@pytest.mark.parametrize("scheme", ["bio", "biluo", "iob1", "bioes"])
def test_decoding_viterbi_equals_per_example_reference(scheme):
    head = EntityRecognitionHead(8, ["LOC", "ORG", "PER"], scheme=scheme)
    rng = np.random.default_rng(len(scheme))
    for _ in range(150):
        batch, width = int(rng.integers(0, 7)), int(rng.integers(1, 14))
        emissions = random_emissions(rng, batch, width, len(head.labels))
        lengths = random_lengths(rng, batch, width)
        args = (head.transitions, head.starts, head.ends)
        assert viterbi(emissions, lengths, *args) == viterbi_reference(emissions, lengths, *args)


def test_decoding_viterbi_decodes_empty_and_one_word_texts_in_one_batch():
    head = EntityRecognitionHead(8, ["PER"], scheme="biluo")
    logits = torch.tensor([[[0.0, 0, 0, 0, 9.0]] * 3] * 3)  # every word prefers U-PER
    mask = torch.tensor([[True, True, True], [False] * 3, [True, False, False]])
    assert head.decode(logits, mask) == [[(0, 1, "PER"), (1, 2, "PER"), (2, 3, "PER")], [], [(0, 1, "PER")]]
    assert head.decode(torch.zeros(2, 0, 5), torch.zeros(2, 0, dtype=torch.bool)) == [[], []]


# --- parser ---


def random_parser_batch(rng: np.random.Generator, parser: DependencyParsingHead):
    batch, width = int(rng.integers(1, 6)), int(rng.integers(1, 12))
    lengths = random_lengths(rng, batch, width)
    mask = torch.arange(width) < lengths.unsqueeze(1)
    words = torch.tensor(rng.normal(size=(batch, width, 16)), dtype=torch.float32)
    if rng.integers(3) == 0:  # few distinct vectors: tied arc scores
        words = words.round()
    cls = torch.tensor(rng.normal(size=(batch, 16)), dtype=torch.float32)
    return EncoderOutput(words=words, word_mask=mask, cls=cls)


@pytest.mark.parametrize("relation", ["biaffine", "diagonal"])
@pytest.mark.parametrize("max_words", [256, 3])
def test_decoding_parser_predict_equals_per_chunk_reference(max_words, relation):
    """Heads and relations of every word equal the per-chunk loop's, over-long texts in pieces included;
    the relation scores of the words are the same numbers, for either relation scorer."""
    torch.manual_seed(0)
    parser = DependencyParsingHead(
        16, RELATIONS, arc_size=8, label_size=6, max_words=max_words, relation=relation
    ).eval()
    with torch.no_grad():
        parser.arc_weight.normal_()  # a trained scorer, not the zero start
    rng = np.random.default_rng(max_words)
    with torch.inference_mode():
        for _ in range(60):
            enc = random_parser_batch(rng, parser)
            scores = parser(enc)
            heads, labels = parser.predict(scores, enc.word_mask)
            want_heads, want_labels, want_logits = predict_reference(parser, scores, enc.word_mask)
            mask = enc.word_mask
            assert torch.equal(heads[mask], want_heads[mask]) and torch.equal(heads[~mask], want_heads[~mask])
            assert torch.equal(labels[mask], want_labels[mask])
            size = scores.word_mask.shape[1]  # any heads in the chunk: the scores of its words agree
            local = torch.tensor(rng.integers(0, size + 1, size=scores.word_mask.shape))
            got = parser.label_logits(scores, local, words_only=True)[scores.word_mask]
            want = label_logits_reference(parser, scores, local)[scores.word_mask]
            torch.testing.assert_close(got, want)
            assert parser.decode(scores, mask) == [
                [(h, RELATIONS[r]) for h, r in zip(hs[:n], rs[:n])]
                for hs, rs, n in zip(want_heads.tolist(), want_labels.tolist(), mask.sum(-1).tolist())
            ]


def test_decoding_best_trees_equal_best_tree_per_chunk():
    """Ties, greedy trees, greedy cycles and several greedy roots: the batched check sends exactly the
    chunks whose greedy heads are no single-rooted tree to Chu-Liu-Edmonds."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        batch, width = int(rng.integers(1, 8)), int(rng.integers(1, 10))
        lengths = random_lengths(rng, batch, width).numpy()
        kind = rng.integers(3)
        if kind == 0:
            arcs = rng.integers(0, 3, size=(batch, width, width + 1)).astype(float)
        else:
            arcs = rng.normal(size=(batch, width, width + 1)) * (1.0 if kind == 1 else 0.01)
            arcs[:, :, 0] += rng.choice([0.0, 3.0])  # every word leaning to the root
        got = best_trees(arcs, lengths)
        for b, n in enumerate(lengths.tolist()):
            assert got[b, :n].tolist() == (best_tree(arcs[b, :n, : n + 1]) if n else [])
            assert (got[b, n:] == 0).all()


def test_decoding_single_rooted_trees_match_find_cycle():
    rng = np.random.default_rng(1)
    for _ in range(500):
        width = int(rng.integers(1, 9))
        n = int(rng.integers(0, width + 1))
        row = np.zeros(width, dtype=np.int64)
        row[:n] = rng.integers(0, n + 1, size=n)
        real = np.arange(width) < n
        want = row[:n].tolist().count(0) == 1 and not find_cycle(row[:n].tolist())
        assert single_rooted_trees(row[None], real[None]).tolist() == [want], row


# --- Doc writing ---


def test_decoding_set_tree_equals_per_token_reference():
    nlp, rng = spacy.blank("en"), np.random.default_rng(2)
    for _ in range(60):
        doc, index = random_doc(rng, nlp, int(rng.integers(1, 12)))
        n = len(index)
        heads = [int(rng.integers(0, n + 1)) for _ in range(n)]
        deps = [str(rng.choice(RELATIONS)) for _ in range(n)]
        cut = n if rng.random() < 0.8 else int(rng.integers(0, n + 1))  # fewer arcs than words: as zip
        ours, theirs = doc.copy(), doc.copy()
        set_tree(ours, index, heads[:cut], deps)
        set_tree_reference(theirs, index, heads[:cut], deps)
        assert doc_state(ours) == doc_state(theirs)


@pytest.mark.parametrize("attr", ["pos", "tag"])
def test_decoding_tagger_set_annotations_equals_per_token_reference(attr):
    """After a parse and on Docs with whitespace tokens (which keep what they had, and the tree stays)."""
    nlp, rng = spacy.blank("en"), np.random.default_rng(3)
    tagger = TokenTaggingHead(8, UPOS)
    for _ in range(40):
        doc, index = random_doc(rng, nlp, int(rng.integers(0, 10)))
        if index:
            set_tree(doc, index, [0] + [1] * (len(index) - 1), ["root"] * len(index))
        for token in doc:
            if token.is_space and rng.random() < 0.5:
                setattr(token, f"{attr}_", "SPACE")
        labels = [str(rng.choice(UPOS)) for _ in index]
        ours, theirs = doc.copy(), doc.copy()
        tagger.set_annotations(ours, labels, index, {"attr": attr})
        tagger_reference(theirs, labels, index, {"attr": attr})
        assert doc_state(ours) == doc_state(theirs)


def test_decoding_tagger_refuses_what_the_token_setter_refuses():
    doc = spacy.blank("en").make_doc("Ann saw Rome")
    tagger = TokenTaggingHead(8, ["PROPN", "VERB", "NOTAPOS"])
    with pytest.raises(ValueError, match="NOTAPOS"):
        tagger.set_annotations(doc, ["PROPN", "VERB", "NOTAPOS"], [0, 1, 2], {"attr": "pos"})
    assert [t.pos_ for t in doc] == ["PROPN", "VERB", ""]  # as far as the per-token setter got


def test_decoding_ner_set_annotations_equals_doc_ents_reference():
    nlp, rng = spacy.blank("en"), np.random.default_rng(4)
    head = EntityRecognitionHead(8, ["LOC", "PER"], scheme="bio")
    for _ in range(40):
        doc, index = random_doc(rng, nlp, int(rng.integers(0, 10)))
        logits = torch.tensor(rng.normal(size=(1, max(1, len(index)), len(head.labels))) * 3)
        (spans,) = head.decode(logits.float(), torch.arange(logits.shape[1]).unsqueeze(0) < len(index))
        ours, theirs = doc.copy(), doc.copy()
        head.set_annotations(ours, spans, index, {})
        ner_reference(theirs, spans, index, {})
        assert doc_state(ours) == doc_state(theirs)
