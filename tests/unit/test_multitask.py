import pytest
import torch

from polyhead.data.collate import Collator
from polyhead.data.schema import Example, legacy_gold
from polyhead.models.encoder import Encoder
from polyhead.models.heads.ner import EntityRecognitionHead
from polyhead.models.heads.parser import DependencyParsingHead
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.heads.textcat import TextClassificationHead
from polyhead.models.multitask import MultitaskModel
from polyhead.tokens.alignment import Windowing
from polyhead.tokens.wordpieces import load_tokenizer, wordpieces
from polyhead.training.callbacks.unfreeze import GradualUnfreezing


@pytest.fixture
def model(tiny_bert):
    torch.manual_seed(0)
    encoder = Encoder(str(tiny_bert), window=30, stride=20, scalar_mix=True)
    heads = {
        "tagger": TokenTaggingHead(32, ["NOUN", "VERB"]),
        "ner": EntityRecognitionHead(32, ["PER"]),
        "textcat": TextClassificationHead(32, ["a", "b"]),
        "parser": DependencyParsingHead(32, ["nsubj", "root"]),
    }
    return MultitaskModel(encoder, heads).eval()


@pytest.fixture
def collate(tiny_bert):
    return Collator(load_tokenizer(str(tiny_bert)), Windowing(window=30, stride=20, pooling="first"))


def test_multitask_encoder_runs_once_per_batch_for_all_heads(model, collate):
    calls = []
    model.encoder.model.register_forward_hook(lambda *args: calls.append(1))
    batch = collate([Example(words="the team won".split()), Example(words="a b".split())])
    preds = model.predict(batch["alignment"])
    assert len(calls) == 1
    assert [len(t) for t in preds["tagger"]] == [3, 2]
    assert set(preds) == {"tagger", "ner", "textcat", "parser"}
    assert [[h for h, _ in tree].count(0) for tree in preds["parser"]] == [1, 1]  # one root per text


def test_multitask_every_word_of_a_2000_word_text_is_predicted(model, collate):
    words = ("the quick team won the match in rome and then flew home " * 200).split()[:2000]
    batch = collate([Example(words=words), Example(words=["short"])])
    assert batch["alignment"].input_ids.shape[1] <= 32  # windows, never one 2000-piece row
    preds = model.predict(batch["alignment"])
    assert len(preds["tagger"][0]) == 2000 and len(preds["tagger"][1]) == 1
    assert all(0 <= s < e <= 2000 for s, e, _ in preds["ner"][0])


def test_multitask_windowed_words_match_a_single_window_when_text_fits(model, collate, tiny_bert):
    words = "the team won the match".split()
    long_window = Collator(collate.tokenizer, Windowing(window=60, stride=60, pooling="first"))
    a = model.encoder(collate.align([words])).words
    b = model.encoder(long_window.align([words])).words
    assert torch.allclose(a, b, atol=1e-5)


def test_multitask_unknown_and_dropped_characters_become_unk(collate):
    pieces = wordpieces(collate.tokenizer, [["the", "\u200b", "zzzq"]])
    assert pieces[0][1] == [collate.tokenizer.unk_token_id]
    assert all(p for p in pieces[0])


def test_multitask_gradual_unfreezing_top_down(model):
    class Stub:
        pass

    module = Stub()
    module.model = model
    callback = GradualUnfreezing(every_n_epochs=1, start_layers=1)

    def trainable():
        params = model.encoder.model.named_parameters()
        return {
            n.split(".")[2] if n.startswith("encoder.") else n.split(".")[0]
            for n, p in params
            if p.requires_grad
        }

    callback.apply(module, 1)
    assert trainable() == {"1", "pooler"}  # top layer (and the pooler above it)
    callback.apply(module, 2)
    assert trainable() == {"0", "1", "pooler"}
    callback.apply(module, 3)
    assert "embeddings" in trainable()


def test_multitask_per_task_mixes_give_each_head_its_own_layers(tiny_bert, collate):
    torch.manual_seed(0)
    encoder = Encoder(str(tiny_bert), window=30, stride=20, scalar_mix="per_task", tasks=["upos", "ner"])
    encoder.eval()
    with torch.no_grad():
        encoder.task_mixes["upos"].weights.copy_(torch.tensor([0.0, 0.0, 20.0]))  # ~ the last layer alone
        encoder.task_mixes["ner"].weights.copy_(torch.tensor([20.0, 0.0, 0.0]))  # ~ the embeddings alone
    alignment = collate.align(["the team won".split(), ["a"]])
    shared = encoder(alignment)
    views = encoder.task_views(shared, ["upos", "ner"])
    states = encoder.model(
        input_ids=alignment.input_ids, attention_mask=alignment.attention_mask, output_hidden_states=True
    ).hidden_states
    from polyhead.models.encoder import word_outputs

    last, first = word_outputs(states[-1], alignment), word_outputs(states[0], alignment)
    assert shared.words.shape[-1] == 3 * 32  # every layer side by side, pooled once
    assert torch.allclose(views["upos"].words, last.words, atol=1e-4)
    assert torch.allclose(views["ner"].words, first.words, atol=1e-4)
    assert torch.allclose(views["upos"].cls, last.cls, atol=1e-4)
    assert not torch.allclose(views["upos"].words, views["ner"].words)


def test_multitask_per_task_mix_needs_tasks_and_a_known_mode(tiny_bert):
    with pytest.raises(ValueError, match="needs the model's tasks"):
        Encoder(str(tiny_bert), window=30, stride=20, scalar_mix="per_task")
    with pytest.raises(ValueError, match="false, true or per_task"):
        Encoder(str(tiny_bert), window=30, stride=20, scalar_mix="per-task")


def test_multitask_task_grad_norms_follow_the_loss_weights(model, collate):
    from polyhead.training.lit_module import task_grad_norms

    model.train()
    gold = legacy_gold(tags=["NOUN", "NOUN", "VERB"], cats=("a",))
    batch = collate([Example(words="the team won".split(), gold=gold)])
    enc, logits = model(batch["alignment"])
    losses = model.losses(logits, model.targets(batch["examples"], enc.word_mask.shape[1], "cpu"))
    assert set(losses) == {"tagger", "textcat"}
    base = {k: float(v) for k, v in task_grad_norms(enc, losses, {"tagger": 1.0, "textcat": 1.0}).items()}
    scaled = {k: float(v) for k, v in task_grad_norms(enc, losses, {"tagger": 1.0, "textcat": 10.0}).items()}
    assert base["tagger"] > 0 and base["textcat"] > 0
    assert scaled["textcat"] == pytest.approx(10 * base["textcat"], rel=1e-4)
    assert scaled["tagger"] == pytest.approx(base["tagger"], rel=1e-6)
    model.total_loss(losses).backward()  # the graph survives for the step's own backward
