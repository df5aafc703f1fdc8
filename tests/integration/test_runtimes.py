"""`auto` precision end to end on whatever CPU runs the tests, and every encoder runtime against fp32."""

import pytest
import spacy
import torch
from test_train import compose_train, only_run

from polyhead.hardware import detect, inference_precision, train_precision
from polyhead.train import run

ONNX = {"precision": "onnx"}
TEXTS = ["Maria Lopez flew to New York on Monday.", "The team won the match.", "rome " * 90]


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("auto")
    overrides = ["trainer.max_epochs=1", "trainer.precision=auto", "export.precision=auto"]
    cfg = compose_train(tmp, tiny_bert, *overrides)
    run(cfg)
    client, (r,) = only_run(tmp)
    return tmp, r


def test_runtimes_auto_training_records_hardware_and_resolved_precision(auto_run):
    _, r = auto_run
    hw = detect()
    tags = r.data.tags
    assert tags["hw/precision"] == train_precision("auto", hw) and tags["hw/precision"] != "auto"
    assert tags["hw/cpu_model"] == hw.cpu_model and tags["hw/cpu_capability"] == hw.capability
    assert tags["hw/threads"] == str(hw.threads) and tags["hw/device"] == (hw.cuda or "cpu")
    expected = inference_precision("auto", hw)
    assert tags["hw/inference_precision"] == expected
    assert r.data.params["trainer/precision"] == "auto"  # the config as written; the tag says what ran


def test_runtimes_auto_pipeline_resolves_on_load(auto_run):
    tmp, r = auto_run
    nlp = spacy.load(tmp / "out" / "spacy_pipeline")
    encoder = nlp.get_pipe("encoder")
    assert encoder.precision == "auto" and encoder.resolved_precision is None  # resolved at first use
    docs = list(nlp.pipe(TEXTS))
    assert encoder.resolved_precision == r.data.tags["hw/inference_precision"]
    assert all(t.pos_ for d in docs for t in d)


def word_vectors(nlp):
    return [d._.polyhead["words"] for d in nlp.pipe(TEXTS)]


@pytest.mark.parametrize("precision", ["onnx", "onnx-int8", "int8", "bf16"])
def test_runtimes_agree_with_fp32(auto_run, precision, tmp_path, monkeypatch):
    if precision.startswith("onnx"):
        pytest.importorskip("onnxruntime")
    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path / "cache"))
    tmp, _ = auto_run
    path = tmp / "out" / "spacy_pipeline"
    fp32 = word_vectors(spacy.load(path, config={"components": {"encoder": {"precision": "fp32"}}}))
    other_nlp = spacy.load(path, config={"components": {"encoder": {"precision": precision}}})
    other = word_vectors(other_nlp)
    assert other_nlp.get_pipe("encoder").resolved_precision == precision
    tolerance = 1e-4 if precision == "onnx" else 0.25  # onnx is exact; the others change the numbers a little
    for a, b in zip(fp32, other):
        assert a.shape == b.shape  # the 180-word text spans several windows
        err = (a - b).abs().max().item() / a.abs().max().item()
        assert err < tolerance, f"{precision}: relative error {err}"
    if precision.startswith("onnx"):
        assert len(list((tmp_path / "cache").glob("encoder-*.onnx"))) == (1 if precision == "onnx" else 2)


def test_runtimes_onnx_cache_is_reused_and_keyed_by_weights(auto_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from polyhead.export import runtimes

    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path))
    tmp, _ = auto_run
    nlp = spacy.load(tmp / "out" / "spacy_pipeline", config={"components": {"encoder": ONNX}})
    encoder = nlp.get_pipe("encoder").encoder
    first = runtimes.onnx_model(encoder, quantize=False)
    stamp = first.stat().st_mtime_ns
    assert runtimes.onnx_model(encoder, quantize=False) == first and first.stat().st_mtime_ns == stamp
    with torch.no_grad():
        encoder.model.embeddings.word_embeddings.weight[0] += 1.0  # other weights: another export
    assert runtimes.onnx_model(encoder, quantize=False) != first


def test_runtimes_onnx_cache_refuses_a_planted_export(tiny_bert, tmp_path, monkeypatch):
    """A file at encoder-<weights key>.onnx that another user owns, or others may write, is never loaded;
    polyhead's own export, even under a group-writable umask, is."""
    import os

    from polyhead.errors import UserError
    from polyhead.export import runtimes
    from polyhead.models.encoder import Encoder

    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path / "cache"))
    encoder = Encoder(str(tiny_bert), window=30, stride=20)
    (tmp_path / "cache").mkdir(mode=0o700)
    planted = tmp_path / "cache" / f"encoder-{runtimes.weights_key(encoder)}.onnx"
    planted.write_bytes(b"not the encoder")
    if os.getuid() == 0:  # root can hand the file to another user, as a shared cache would hold it
        os.chown(planted, 4242, 4242)
        with pytest.raises(UserError, match=f"^{planted}: cache file is owned by uid 4242, not by you"):
            runtimes.onnx_model(encoder, quantize=False)
        os.chown(planted, os.getuid(), os.getgid())
    planted.chmod(0o666)
    with pytest.raises(UserError, match=f"^{planted}: cache file is writable by other users"):
        runtimes.onnx_model(encoder, quantize=False)
    planted.unlink()
    (tmp_path / "cache").chmod(0o777)
    with pytest.raises(UserError, match=f"^{tmp_path / 'cache'}: cache folder is writable by other users"):
        runtimes.onnx_model(encoder, quantize=False)
    (tmp_path / "cache").chmod(0o700)
    old = os.umask(0o002)
    try:
        path = runtimes.onnx_model(encoder, quantize=False)  # exported by polyhead itself
        assert runtimes.onnx_model(encoder, quantize=False) == path  # and trusted the next time
    finally:
        os.umask(old)
    assert path == planted and path.stat().st_mode & 0o777 == 0o600 and path.read_bytes()[:4] != b"not "


def test_runtimes_onnx_without_onnxruntime_names_the_install(auto_run, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    tmp, _ = auto_run
    nlp = spacy.load(tmp / "out" / "spacy_pipeline", config={"components": {"encoder": ONNX}})
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        nlp("Maria flew to Rome.")
