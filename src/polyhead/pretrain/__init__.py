"""Masked-language-model pretraining of the encoder on raw text: text sources, packing, vocabulary and
run(cfg) (pretrain.py)."""
