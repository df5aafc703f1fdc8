import pytest
import torch
from omegaconf import OmegaConf

from polyhead.models.encoder import Encoder
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.multitask import MultitaskModel
from polyhead.training.optim import build_optimizer, encoder_depth, param_groups, schedule_lambda


@pytest.fixture
def model(tiny_bert):
    encoder = Encoder(str(tiny_bert), window=30, stride=20)
    return MultitaskModel(encoder, {"tagger": TokenTaggingHead(encoder.hidden_size, ["A", "B"])})


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("encoder.model.embeddings.word_embeddings.weight", 0),
        ("encoder.model.encoder.layer.0.attention.self.query.weight", 1),
        ("encoder.model.encoder.layer.1.output.dense.bias", 2),
        ("encoder.model.pooler.dense.weight", 2),
    ],
)
def test_optim_encoder_depth(name, depth):
    assert encoder_depth(name, num_layers=2) == depth


def test_optim_layerwise_decay_head_lr_and_no_decay(model):
    groups = {
        g["name"]: g for g in param_groups(model, lr=1e-3, head_lr=5e-3, layer_decay=0.5, weight_decay=0.01)
    }
    assert groups["layer_02"]["lr"] == pytest.approx(1e-3)  # top layer
    assert groups["layer_01"]["lr"] == pytest.approx(5e-4)
    assert groups["layer_00"]["lr"] == pytest.approx(2.5e-4)  # embeddings: lowest
    assert groups["heads"]["lr"] == pytest.approx(5e-3)
    assert groups["layer_01_no_decay"]["weight_decay"] == 0.0
    assert groups["layer_01"]["weight_decay"] == 0.01
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = [names[id(p)] for g in groups.values() if g["weight_decay"] == 0 for p in g["params"]]
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay)
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


@pytest.mark.parametrize("kind", ["linear", "slanted_triangular", "constant"])
def test_optim_schedules_warm_up_then_decay(kind):
    fn = schedule_lambda(kind, total_steps=100, warmup=0.1, ratio=32)
    values = [fn(s) for s in range(100)]
    peak = max(values)
    assert peak == pytest.approx(1.0)
    assert values[0] < peak
    assert values.index(peak) in (9, 10)
    if kind != "constant":
        assert values[-1] < 0.1
        assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_optim_scheduler_applies_to_every_group(model):
    cfg = OmegaConf.create(
        {
            "lr": 1e-3,
            "head_lr": 1e-2,
            "layer_decay": 0.5,
            "weight_decay": 0.0,
            "betas": [0.9, 0.99],
            "eps": 1e-8,
            "schedule": "linear",
            "warmup": 0.5,
            "fused": False,
        }
    )
    optimizer, sched = build_optimizer(model, total_steps=4, cfg=cfg)
    before = {g["name"]: g["lr"] for g in optimizer.param_groups}
    optimizer.step()
    sched["scheduler"].step()
    after = {g["name"]: g["lr"] for g in optimizer.param_groups}
    ratios = {name: after[name] / before[name] for name in before}
    assert len(set(round(r, 6) for r in ratios.values())) == 1  # the decay pattern survives the schedule
    assert torch.is_tensor(next(iter(optimizer.param_groups))["params"][0])


def test_optim_task_lr_gives_a_task_its_own_head_group(tiny_bert):
    encoder = Encoder(str(tiny_bert), window=30, stride=20, scalar_mix="per_task", tasks=["upos", "xpos"])
    model = MultitaskModel(
        encoder, {"upos": TokenTaggingHead(32, ["A"]), "xpos": TokenTaggingHead(32, ["B"])}
    )
    groups = param_groups(model, 1e-3, 5e-3, 0.5, 0.01, task_lr={"xpos": 2e-2})
    by_name = {g["name"]: g for g in groups}
    names = {id(p): n for n, p in model.named_parameters()}
    xpos = [names[id(p)] for key in ("head_xpos", "head_xpos_no_decay") for p in by_name[key]["params"]]
    assert by_name["head_xpos"]["lr"] == pytest.approx(2e-2)
    assert sorted(xpos) == sorted(n for n in names.values() if ".xpos." in n)  # its head and its mix
    assert by_name["heads"]["lr"] == pytest.approx(5e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match=r"optim.task_lr names \['ner'\]"):
        param_groups(model, 1e-3, 5e-3, 0.5, 0.01, task_lr={"ner": 1e-2})
