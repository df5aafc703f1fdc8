import pytest
import torch

from polyhead.data.schema import Example, legacy_gold
from polyhead.data.spans import tags_to_spans
from polyhead.metrics import SpanF1
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.ner import EntityRecognitionHead, viterbi
from polyhead.models.heads.tagger import IGNORE, TokenTaggingHead
from polyhead.models.heads.textcat import TextClassificationHead


def encoded(batch=2, width=4, hidden=8):
    torch.manual_seed(0)
    mask = torch.tensor([[True] * width, [True] * (width - 2) + [False] * 2])[:batch]
    return EncoderOutput(
        words=torch.randn(batch, width, hidden), word_mask=mask, cls=torch.randn(batch, hidden)
    )


def test_heads_tagger_masks_unlabelled_texts():
    head = TokenTaggingHead(8, ["NOUN", "VERB"])
    head.task = "tagger"  # MultitaskModel names a head after its key
    tagged = Example(words=list("abcd"), gold=legacy_gold(tags=["NOUN", "VERB", "NOUN", "NOUN"]))
    examples = [tagged, Example(words=list("ab"))]
    targets = head.targets(examples, 4)
    assert targets.tolist() == [[0, 1, 0, 0], [IGNORE] * 4]
    logits = head(encoded())  # (B, W, L)
    assert logits.shape == (2, 4, 2)
    # the loss only sees the first text: changing the second text's logits leaves it unchanged
    changed = logits.clone()
    changed[1] += 5
    assert head.loss(logits, targets).item() == pytest.approx(head.loss(changed, targets).item())


@pytest.mark.parametrize("exclusive", [True, False])
def test_heads_textcat_targets_loss_and_scores(exclusive):
    head = TextClassificationHead(8, ["a", "b", "c"], exclusive=exclusive)
    head.task = "textcat"
    examples = [Example(words=["x"], gold=legacy_gold(cats=("b",))), Example(words=["y"])]
    targets = head.targets(examples, 4)
    assert head.labelled(targets).tolist() == [True, False]
    logits = head(encoded())
    assert torch.isfinite(head.loss(logits, targets))
    scores = head.decode(logits, encoded().word_mask)
    if exclusive:
        assert sum(scores[0].values()) == pytest.approx(1.0)
    else:
        assert all(0 <= v <= 1 for v in scores[0].values())


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_heads_textcat_pooling_ignores_padding(pooling):
    head = TextClassificationHead(8, ["a", "b"], pooling=pooling).eval()
    enc = encoded()
    out = head(enc)
    enc.words[1, 2:] += 100.0  # padded words of text 2 must not matter
    assert torch.allclose(out, head(enc))


def test_heads_ner_targets_from_spans_and_masking():
    head = EntityRecognitionHead(8, ["PER", "LOC"], scheme="bio")
    assert head.labels[0] == "O"
    head.task = "ner"
    ex = Example(words=["Ann", "Lee", "in", "Rome"], gold=legacy_gold(ents=[(0, 2, "PER"), (3, 4, "LOC")]))
    targets = head.targets([ex, Example(words=["x"])], 4)
    assert [head.labels[i] for i in targets[0].tolist()] == ["B-PER", "I-PER", "O", "B-LOC"]
    assert targets[1].tolist() == [IGNORE] * 4


@pytest.mark.parametrize("scheme", ["bio", "biluo"])
def test_heads_ner_decoding_always_yields_valid_spans(scheme):
    head = EntityRecognitionHead(8, ["PER", "LOC", "ORG"], scheme=scheme)
    torch.manual_seed(1)
    logits = torch.randn(16, 12, len(head.labels)) * 5  # random scores favour invalid sequences
    mask = torch.arange(12)[None, :] < torch.randint(1, 13, (16, 1))
    for path, n in zip(head.decode_tags(logits, mask), mask.sum(-1).tolist()):
        assert len(path) == n
        tags_to_spans([head.labels[i] for i in path], scheme)  # raises on an invalid sequence


def test_heads_viterbi_prefers_valid_path_over_greedy():
    labels = ["O", "B-PER", "I-PER"]
    head = EntityRecognitionHead(4, ["PER"], scheme="bio")
    assert head.labels == labels
    # greedy argmax would give O, I-PER (invalid); the best valid path is B-PER, I-PER or O, O
    emissions = torch.log(torch.tensor([[[0.5, 0.45, 0.05], [0.1, 0.1, 0.8]]]))
    (path,) = viterbi(emissions, torch.tensor([2]), head.transitions, head.starts, head.ends)
    assert [labels[i] for i in path] == ["B-PER", "I-PER"]


def test_heads_span_f1_exact_match_per_type():
    metric = SpanF1(["LOC", "PER"])
    metric.update([[(0, 2, "PER"), (3, 4, "LOC")]], [[(0, 2, "PER"), (3, 5, "LOC")]])
    out = metric.compute()
    assert out["precision"].item() == pytest.approx(0.5)
    assert out["recall"].item() == pytest.approx(0.5)
    assert out["f1_PER"].item() == pytest.approx(1.0)
    assert out["f1_LOC"].item() == pytest.approx(0.0)
    # per type: precision, recall, F1, support (gold spans); a table, not a scalar metric
    assert out["per_type"].tolist() == [[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]


def test_heads_metric_confusion_matrix_rows_gold_columns_predicted():
    head = TokenTaggingHead(8, ["A", "B", "C"])
    metric = head.metric()
    logits = torch.tensor([[[5.0, 0, 0], [0, 5.0, 0], [0, 5.0, 0], [0, 0, 5.0]]])  # predicts A B B C
    targets = torch.tensor([[0, 1, 2, IGNORE]])  # gold A B C, last word unlabelled
    head.update_metric(metric, logits, targets, torch.ones(1, 4, dtype=torch.bool), [])
    out = metric.compute()
    assert out["confusion"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert out["acc"].item() == pytest.approx(2 / 3)
