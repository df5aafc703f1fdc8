"""The dependency parser head: its decoder always yields a single-rooted tree (the best one), its targets and
loss mask texts without trees, its metric counts every word, and its spaCy side sets token.head / dep_."""

import itertools
from dataclasses import replace

import numpy as np
import pytest
import spacy
import torch
from torch import nn

from polyhead.data.schema import Example, find_cycle, legacy_gold
from polyhead.export.convert import legacy_writers, to_doc, to_docbin
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.parser import (
    DependencyParsingHead,
    best_tree,
    bilinear,
    bilinear_by_head,
    set_tree,
)
from polyhead.models.heads.tagger import IGNORE

LABELS = ["nsubj", "obj", "punct", "root"]


def assert_single_rooted_tree(heads: list[int], n: int) -> None:
    assert len(heads) == n
    assert all(0 <= h <= n and h != i for i, h in enumerate(heads, 1)), heads
    assert heads.count(0) == 1, heads
    assert find_cycle(heads) == [], heads


def tree_score(scores: np.ndarray, heads: list[int]) -> float:
    return float(sum(scores[i, h] for i, h in enumerate(heads)))


def random_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scores of several shapes: gaussian, heavy ties, one huge value, root preferred by every word."""
    kind = rng.integers(4)
    if kind == 0:
        return rng.normal(size=(n, n + 1)) * rng.choice([0.1, 3, 30])
    if kind == 1:
        return rng.integers(0, 2, size=(n, n + 1)).astype(float)  # many equal trees
    if kind == 2:
        scores = rng.normal(size=(n, n + 1))
        scores[rng.integers(n), rng.integers(n + 1)] = 1e6
        return scores
    scores = rng.normal(size=(n, n + 1))
    scores[:, 0] += 10  # greedy would make every word a root
    return scores


def test_parser_decoder_always_yields_a_single_rooted_tree():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 40))
        assert_single_rooted_tree(best_tree(random_scores(rng, n)), n)


def test_parser_decoder_finds_the_best_single_rooted_tree():
    """Against every head assignment of up to 6 words: no single-rooted tree scores higher."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        n = int(rng.integers(1, 7))
        scores = random_scores(rng, n)
        trees = [
            list(h)
            for h in itertools.product(range(n + 1), repeat=n)
            if list(h).count(0) == 1 and not find_cycle(list(h))
        ]
        best = max(tree_score(scores, t) for t in trees)
        assert tree_score(scores, best_tree(scores)) == pytest.approx(best, abs=1e-6)


def test_parser_decoder_keeps_a_non_projective_tree():
    """Word 1 heads word 3 while word 2 heads word 4: crossing arcs, which no projective decoder gives."""
    gold = [0, 1, 1, 2]  # 2 <- 1 -> 3, 2 -> 4 crosses 1 -> 3
    scores = np.full((4, 5), -5.0)
    for i, h in enumerate(gold):
        scores[i, h] = 5.0
    heads = best_tree(scores)
    assert heads == gold


@pytest.fixture
def head():
    torch.manual_seed(0)
    head = DependencyParsingHead(8, LABELS, arc_size=6, label_size=5).eval()
    head.task = "parser"  # MultitaskModel names a head after its key
    return head


def encoded(batch=2, width=4, hidden=8):
    torch.manual_seed(0)
    mask = torch.tensor([[True] * width, [True] * (width - 2) + [False] * 2])[:batch]
    return EncoderOutput(
        words=torch.randn(batch, width, hidden), word_mask=mask, cls=torch.randn(batch, hidden)
    )


def test_parser_targets_and_loss_mask_texts_without_trees(head):
    tree = Example(list("abcd"), gold=legacy_gold(heads=[2, 0, 2, 2], deps=["nsubj", "root", "obj", "punct"]))
    examples = [tree, Example(list("ab"))]
    targets = head.targets(examples, 4)  # (B, W, 2)
    assert targets[0].tolist() == [[2, 0], [0, 3], [2, 1], [2, 2]]
    assert (targets[1] == IGNORE).all()
    scores = head(encoded())
    assert scores.arcs.shape == (2, 4, 5)
    loss = head.loss(scores, targets)
    changed = replace(scores, arcs=scores.arcs.clone(), label_deps=scores.label_deps.clone())
    changed.arcs[1] += torch.randn(4, 5) * 5  # the unannotated text's scores must not move the loss
    changed.label_deps[1] += 5
    assert torch.isfinite(loss) and head.loss(changed, targets).item() == pytest.approx(loss.item())


def test_parser_padding_and_self_are_never_heads(head):
    enc = encoded()
    heads, _ = head.predict(head(enc), enc.word_mask)
    assert heads[1, :2].tolist() in ([0, 1], [2, 0])  # text 2 has 2 words: node 3 and 4 are padding
    for row, n in zip(heads.tolist(), (4, 2)):
        assert_single_rooted_tree(row[:n], n)


def test_parser_long_texts_are_parsed_in_pieces_of_max_words(head):
    short = DependencyParsingHead(8, LABELS, arc_size=6, label_size=5, max_words=2).eval()
    short.load_state_dict(head.state_dict())
    short.task = "parser"
    enc = encoded()
    whole, pieces = head(enc), short(enc)
    assert pieces.arcs.shape == (4, 2, 3) and pieces.chunks == 2  # 2 texts x 2 pieces of 2 words
    assert torch.equal(pieces.arcs[0], whole.arcs[0, :2, :3])  # in-piece arcs score as in the whole text
    assert torch.equal(pieces.arcs[1, :, 0], whole.arcs[0, 2:, 0])  # the root arcs of words 3 and 4
    heads, _ = short.predict(pieces, enc.word_mask)
    assert heads[0].tolist()[:2].count(0) == 1 and set(heads[0, :2].tolist()) <= {0, 1, 2}
    assert heads[0].tolist()[2:].count(0) == 1 and set(heads[0, 2:].tolist()) <= {0, 3, 4}  # word numbers
    tree = Example(list("abcd"), gold=legacy_gold(heads=[2, 0, 2, 3], deps=["nsubj", "root", "obj", "punct"]))
    targets = short.targets([tree, tree], 4)
    crossing = targets.clone()
    crossing[:, 2, 0] = 1  # word 3's head moves to the other piece: left out of the loss, like padding
    assert short.loss(pieces, crossing).item() == pytest.approx(
        short.loss(pieces, targets.index_fill(1, torch.tensor([2]), IGNORE)).item()
    )


def test_parser_metric_counts_every_word_including_punctuation(head):
    enc = encoded(batch=1)
    scores = head(enc)
    heads, labels = head.predict(scores, enc.word_mask)
    gold = torch.stack([heads, labels], -1)
    gold[0, 0, 0] = (heads[0, 0] + 1) % 5 or 2  # word 1: wrong head
    gold[0, 1, 1] = (labels[0, 1] + 1) % len(LABELS)  # word 2: right head, wrong relation
    metric = head.metric()
    head.update_metric(metric, scores, gold, enc.word_mask, [])
    out = metric.compute()
    assert out["uas"].item() == pytest.approx(3 / 4) and out["las"].item() == pytest.approx(2 / 4)


def test_parser_decode_gives_head_and_relation_per_word(head):
    enc = encoded()
    pred = head.decode(head(enc), enc.word_mask)
    assert [len(p) for p in pred] == [4, 2]
    assert all(isinstance(h, int) and d in LABELS for text in pred for h, d in text)


def test_parser_set_tree_hangs_whitespace_from_the_word_before():
    nlp = spacy.blank("en")
    doc = nlp.make_doc("  Ann  saw Rome .")
    index = [t.i for t in doc if not t.is_space]
    assert [doc[i].text for i in index] == ["Ann", "saw", "Rome", "."]
    set_tree(doc, index, [2, 0, 2, 2], ["nsubj", "root", "obj", "punct"])
    words = {doc[i].text: (doc[i].head.text, doc[i].dep_) for i in index}
    assert words == {
        "Ann": ("saw", "nsubj"),
        "saw": ("saw", "root"),
        "Rome": ("saw", "obj"),
        ".": ("saw", "punct"),
    }
    spaces = [(t.head.i, t.dep_) for t in doc if t.is_space]
    assert spaces == [
        (index[0], "dep"),
        (index[0], "dep"),
    ]  # before any word: the first word; else the previous
    assert len(list(doc.sents)) == 1


def test_parser_set_tree_takes_relations_whose_hash_exceeds_int64():
    doc = spacy.blank("en").make_doc("all the cats")
    assert doc.vocab.strings.add("det:predet") >= 2**63  # a uint64 hash no int64 column can hold
    set_tree(doc, [0, 1, 2], [3, 3, 0], ["det:predet", "det", "root"])
    assert [(t.head.i, t.dep_) for t in doc] == [(2, "det:predet"), (2, "det"), (2, "root")]


def test_parser_gold_trees_written_by_to_docbin_and_read_back(tmp_path):
    from polyhead.data.readers import read_corpus

    examples = [
        Example(
            ["Ann", "saw", "Rome"],
            gold=legacy_gold(tags=["PROPN", "VERB", "PROPN"], heads=[2, 0, 2], deps=["nsubj", "root", "obj"]),
        ),
        Example(["Hi", "."], gold=legacy_gold(cats=("a",))),  # no tree: no relations written
    ]
    docbin = to_docbin(examples, "en", legacy_writers(examples, "pos"))
    path = tmp_path / "gold.spacy"
    docbin.to_disk(path)
    docs = list(docbin.get_docs(spacy.blank("en").vocab))
    assert [(t.head.i, t.dep_, t.pos_) for t in docs[0]] == [
        (1, "nsubj", "PROPN"),
        (1, "root", "VERB"),
        (1, "obj", "PROPN"),
    ]
    assert not docs[1].has_annotation("DEP") and docs[1].cats == {"a": 1.0}
    back = read_corpus(path, "docbin")
    assert back[0].get("tree") == ([2, 0, 2], ["nsubj", "root", "obj"]) and back[1].get("tree") is None
    writers = legacy_writers(examples[:1], "tag")
    doc = to_doc(spacy.blank("en").vocab, examples[0], writers)  # the per-Example function, tag_ this time
    assert [t.tag_ for t in doc] == ["PROPN", "VERB", "PROPN"] and doc[0].head.i == 1


def test_parser_relation_scores_match_nn_bilinear_values_and_gradients():
    torch.manual_seed(0)
    layer = nn.Bilinear(6, 5, 4).double()
    left = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    right = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    ours, theirs = bilinear(left, right, layer), layer(left, right)
    torch.testing.assert_close(ours, theirs)
    grads = torch.autograd.grad(ours.square().sum(), [left, right, layer.weight, layer.bias])
    expected = torch.autograd.grad(theirs.square().sum(), [left, right, layer.weight, layer.bias])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_parser_relation_scores_by_head_equal_per_word_scores():
    """Heads shared by several words, a node heading none, one word alone, and no words at all."""
    torch.manual_seed(0)
    layer = nn.Bilinear(6, 5, 4).double()
    dep, nodes = torch.randn(9, 6, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    which = torch.tensor([3, 0, 3, 3, 6, 0, 2, 3, 0])
    torch.testing.assert_close(bilinear_by_head(dep, nodes, which, layer), layer(dep, nodes[which]))
    torch.testing.assert_close(bilinear_by_head(dep[:1], nodes, which[:1], layer), layer(dep[:1], nodes[[3]]))
    assert bilinear_by_head(dep[:0], nodes, which[:0], layer).shape == (0, 4)


@pytest.mark.parametrize("relation", ["biaffine", "diagonal"])
def test_parser_decoded_relations_equal_the_training_scorer(relation):
    """Decoding scores relations per head node; training per word: the same relations for every word."""
    torch.manual_seed(0)
    labels = ["nsubj", "root", "obj", "det", "amod"]
    head = DependencyParsingHead(32, labels, 16, 8, 0.0, max_words=5, relation=relation).eval()
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4, [False] * 7])
    with torch.no_grad():
        scores = head(EncoderOutput(torch.randn(3, 7, 32), mask, torch.randn(3, 32)))
        heads = scores.arcs.argmax(-1)
        fast = head.label_logits(scores, heads, words_only=True)
        slow = head.label_logits(scores, heads)
    real = scores.word_mask
    torch.testing.assert_close(fast[real], slow[real], atol=1e-5, rtol=1e-5)
    assert not fast[~real].any()


def test_parser_soft_targets_reach_its_loss():
    """A teacher parser's rows (head and relation distributions per word, long texts in pieces) give a
    student the KL to them: zero for the teacher itself, positive for another parser, with gradients into
    both its arc and relation scorers."""
    torch.manual_seed(0)
    labels = ["nsubj", "root", "obj"]
    teacher, student = (DependencyParsingHead(32, labels, 16, 8, 0.0, max_words=4).eval() for _ in "ts")
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    enc = EncoderOutput(torch.randn(2, 6, 32), mask, torch.randn(2, 32))
    rows = teacher.soft_targets(teacher(enc), mask)
    assert [tuple(r.shape) for r in rows] == [(6, 4 + 1 + 3), (3, 4 + 1 + 3)]
    padded = torch.zeros(2, 6, 8)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = r
    assert float(teacher.soft_loss(teacher(enc), padded, mask, 2.0)) == pytest.approx(0.0, abs=1e-5)
    loss = student.soft_loss(student(enc), padded, mask, 2.0)
    assert float(loss) > 0.01
    loss.backward()
    assert student.arc_weight.grad.abs().sum() > 0 and student.label_bilinear.weight.grad.abs().sum() > 0


def test_parser_loss_ignores_the_padding_of_a_long_texts_last_piece():
    """A 6-word text in pieces of 4: the last piece's two padded positions add nothing to the loss."""
    torch.manual_seed(0)
    head = DependencyParsingHead(32, ["nsubj", "root"], 16, 8, 0.0, max_words=4).eval()
    enc = EncoderOutput(torch.randn(1, 6, 32), torch.ones(1, 6, dtype=torch.bool), torch.randn(1, 32))
    head.task = "parser"
    gold = legacy_gold(heads=[2, 0, 2, 5, 2, 5], deps=["nsubj", "root"] * 3)
    targets = head.targets([Example("a b c d e f".split(), gold=gold)], 6)
    scores = head(enc)
    before = float(head.loss(scores, targets))
    arcs, deps = torch.zeros_like(scores.arcs), torch.zeros_like(scores.label_deps)
    arcs[1, 2:, 0] = 100.0  # the padding of the second piece, scored as if its head were the root
    deps[1, 2:] = 5.0
    scores = replace(scores, arcs=scores.arcs + arcs, label_deps=scores.label_deps + deps)
    assert float(head.loss(scores, targets)) == pytest.approx(before)


def test_parser_diagonal_relation_scores_weigh_the_product_of_word_and_head():
    """score_l = sum_k w_lk dep_k head_k + b_l + the linear term, no label_size^2 matrix per relation."""
    torch.manual_seed(0)
    head = DependencyParsingHead(8, LABELS, arc_size=6, label_size=5, relation="diagonal").double()
    assert not hasattr(head, "label_bilinear") and head.label_diagonal.weight.shape == (len(LABELS), 5)
    dep, node = torch.randn(3, 7, 5, dtype=torch.float64), torch.randn(3, 7, 5, dtype=torch.float64)
    weight, bias = head.label_diagonal.weight, head.label_diagonal.bias
    want = torch.stack([(dep * node * weight[lab]).sum(-1) for lab in range(len(LABELS))], -1) + bias
    want = want + torch.cat([dep, node], -1) @ head.label_linear.weight.T
    torch.testing.assert_close(head.relation_scores(dep, node), want)


@pytest.mark.parametrize("relation", ["biaffine", "diagonal"])
def test_parser_learns_a_batch_with_either_relation_scorer(relation):
    """Gradients reach every part: two texts' heads and relations are learned exactly."""
    torch.manual_seed(0)
    head = DependencyParsingHead(8, LABELS, arc_size=6, label_size=5, dropout=0.0, relation=relation)
    head.task = "parser"
    trees = [
        ([2, 0, 2, 2], ["nsubj", "root", "obj", "punct"]),
        ([0, 1, 1, 3], ["root", "obj", "punct", "obj"]),
    ]
    examples = [Example(list("abcd"), gold=legacy_gold(heads=h, deps=d)) for h, d in trees]
    enc, targets = encoded(), head.targets(examples, 4)
    enc.word_mask[:] = True
    optim = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        optim.zero_grad()
        head.loss(head(enc), targets).backward()
        optim.step()
    heads, labels = head.eval().predict(head(enc), enc.word_mask)
    assert heads.tolist() == [h for h, _ in trees]
    assert [[LABELS[r] for r in row] for row in labels.tolist()] == [d for _, d in trees]


def test_parser_relation_setting_is_checked_and_old_pipelines_build_biaffine(tmp_path):
    """A relation scorer it does not know is one line naming the task; a head.json written before the
    setting existed rebuilds the biaffine scorer its weights belong to."""
    import json

    from omegaconf import OmegaConf

    from polyhead.errors import UserError
    from polyhead.export.components import read_head_spec
    from polyhead.models.build import build_model
    from polyhead.models.heads.registry import head_key

    old = DependencyParsingHead(8, LABELS, arc_size=6, label_size=5)
    config = {k: v for k, v in old.config.items() if k != "relation"}
    (tmp_path / "head.json").write_text(json.dumps({"head": head_key(old), "config": config}))
    loaded = read_head_spec(tmp_path / "head.json")
    loaded.load_state_dict(old.state_dict())  # strict: the same parameters
    assert loaded.relation == "biaffine"
    cfg = OmegaConf.create(
        {
            "encoder": {"_target_": "types.SimpleNamespace", "hidden_size": 8},  # the heads read its size
            "model": {
                "heads": {
                    "deps": {
                        "_target_": "polyhead.models.heads.parser.DependencyParsingHead",
                        "_partial_": True,
                        "relation": "bilinear",
                    }
                }
            },
        }
    )
    with pytest.raises(UserError, match=r"^model\.heads\.deps: parser relation must be one of biaffine, "):
        build_model(cfg, {"deps": LABELS})


@pytest.mark.parametrize("relation", ["biaffine", "diagonal"])
def test_parser_as_linears_scores_as_before(relation):
    """`as_linears` gives the four projections and the biaffine scorer's head side the form of Linear layers
    (for int8 copies): arcs and decoded relations score as with the weights they copy, and nothing is
    added to what is saved."""
    torch.manual_seed(0)
    labels = ["nsubj", "root", "obj", "det", "amod"]
    head = DependencyParsingHead(32, labels, 16, 8, 0.0, max_words=5, relation=relation).eval()
    saved = set(head.state_dict())
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4, [False] * 7])
    enc = EncoderOutput(torch.randn(3, 7, 32), mask, torch.randn(3, 32))
    with torch.no_grad():
        before = head(enc)
        relations = head.label_logits(before, before.arcs.argmax(-1), words_only=True)
        head.as_linears()
        after = head(enc)
        again = head.label_logits(after, before.arcs.argmax(-1), words_only=True)
    assert (head.head_side is None) == (relation == "diagonal") and head.projections is not None
    for got, want in ((after.arcs, before.arcs), (after.label_heads, before.label_heads), (again, relations)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    added = {"projections.weight", "projections.bias"}
    added |= {"head_side.weight"} if relation == "biaffine" else set()
    assert set(head.state_dict()) - saved == added  # the copy's; the component saves the head itself


def test_parser_int8_copy_quantizes_its_wide_products_and_leaves_the_head_alone():
    """quantize_head: the copy's four projections (as one) and the relation scorer's head side int8 per
    channel, its narrow layers fp32; the head itself keeps its fp32 layers and weights, and the copy still
    decodes one tree per text. A head kind that names no layers to quantize (the tagger) runs as it is."""
    from polyhead.export.quantize import FullRangeLinear, quantize_head
    from polyhead.models.heads.tagger import TokenTaggingHead

    tagger = TokenTaggingHead(32, LABELS)
    assert quantize_head(tagger) is tagger

    torch.manual_seed(0)
    head = DependencyParsingHead(32, LABELS, 16, 8, 0.0).eval()
    before = {k: v.clone() for k, v in head.state_dict().items()}
    int8 = quantize_head(head)
    assert {name for name, m in int8.named_modules() if isinstance(m, FullRangeLinear)} == {
        "projections",
        "head_side",
    }
    assert not any(isinstance(m, FullRangeLinear) for m in head.modules()) and head.head_side is None
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])
    with torch.inference_mode():
        trees = int8.decode(int8(EncoderOutput(torch.randn(2, 6, 32), mask, torch.randn(2, 32))), mask)
    for tree, n in zip(trees, (6, 2)):
        assert_single_rooted_tree([h for h, _ in tree], n)
