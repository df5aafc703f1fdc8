"""A task's settings live in its node under model.heads: its head's arguments, its loss weight and its
objective weights, so removing the node removes the task; a head records its own constructor arguments."""

import pytest
from conftest import compose_config

from polyhead.models.build import head_spec, loss_weights, objective_weights, optim_settings
from polyhead.models.heads.registry import HEADS


def test_task_settings_in_the_node_weigh_the_objective_and_the_loss(tmp_path):
    cfg = compose_config(
        "train", tmp_path, ["experiment=ewt_ud", "model.heads.lemma.loss_weight=0.5"], tmp_path
    )
    weights = objective_weights(cfg)
    assert {k: weights[k] for k in ("upos_acc", "lemma_acc", "parser_las", "ner_f1", "genre_macro_f1")} == {
        "upos_acc": 1.0,
        "lemma_acc": 1.0,
        "parser_las": 1.0,
        "ner_f1": 1.0,
        "genre_macro_f1": 1.0,
    }
    assert loss_weights(cfg)["lemma"] == 0.5 and loss_weights(cfg)["upos"] == 1.0
    assert (
        "objective" not in head_spec(cfg.model.heads.upos) and head_spec(cfg.model.heads.upos).attr == "pos"
    )
    dropped = compose_config("train", tmp_path, ["experiment=ewt_ud", "~model.heads.parser"], tmp_path)
    assert "parser_las" not in objective_weights(dropped) and "parser" not in loss_weights(dropped)


def test_task_settings_a_nodes_lr_is_its_heads_rate_and_leaves_with_it(tmp_path):
    overrides = ["experiment=ewt_ud", "+model.heads.lemma.lr=3e-3", "+optim.task_lr.upos=5e-3"]
    cfg = compose_config("train", tmp_path, overrides, tmp_path)
    assert dict(optim_settings(cfg).task_lr) == {"parser": 2e-3, "lemma": 3e-3, "upos": 5e-3}
    assert "lr" not in head_spec(cfg.model.heads.lemma)  # a task setting, not a head argument
    over = compose_config("train", tmp_path, [*overrides, "+optim.task_lr.lemma=9e-3"], tmp_path)
    assert optim_settings(over).task_lr.lemma == 3e-3  # the node's rate wins
    dropped = compose_config("train", tmp_path, ["experiment=ewt_ud", "~model.heads.parser"], tmp_path)
    assert dict(optim_settings(dropped).task_lr) == {}


def test_task_settings_old_top_level_weights_still_count(tmp_path):
    cfg = compose_config("train", tmp_path, ["model.loss_weights.ner=2.0"], tmp_path)
    assert loss_weights(cfg) == {"tagger": 1.0, "ner": 2.0, "textcat": 1.0}
    assert objective_weights(cfg) == {"tagger_acc": 1.0, "ner_f1": 1.0, "textcat_macro_f1": 1.0}


@pytest.mark.parametrize("key", sorted(HEADS))
def test_task_settings_a_head_records_the_arguments_it_was_built_with(key):
    head = HEADS[key](8, ["b", "a"], dropout=0.2)
    assert (
        head.config["hidden_size"] == 8
        and head.config["labels"] == ["b", "a"]
        and head.config["dropout"] == 0.2
    )
    again = HEADS[key](**head.config)
    assert again.config == head.config and type(again) is type(head)
