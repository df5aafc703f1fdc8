"""`auto` precision end to end on whatever CPU runs the tests, and every encoder runtime against fp32."""

import pytest
import spacy
import torch
from conftest import compose_train, only_run, write_tiny_bert

from polyhead.hardware import detect, inference_precision, train_precision
from polyhead.training.run import run

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
    if precision == "bf16":  # the heads read the encoder's bf16 vectors (and compute in bf16) as they are
        assert {v.dtype for v in other} == {torch.bfloat16}
        assert all(t.pos_ for d in other_nlp.pipe(TEXTS) for t in d)


def test_runtimes_onnx_cache_is_reused_and_keyed_by_weights(auto_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from polyhead.export import runtimes

    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path))
    tmp, _ = auto_run
    nlp = spacy.load(tmp / "out" / "spacy_pipeline", config={"components": {"encoder": ONNX}})
    encoder = nlp.get_pipe("encoder").encoder
    first = runtimes.onnx_model(encoder)
    stamp = first.stat().st_mtime_ns
    assert runtimes.onnx_model(encoder) == first and first.stat().st_mtime_ns == stamp
    with torch.no_grad():
        encoder.model.embeddings.word_embeddings.weight[0] += 1.0  # other weights: another export
    assert runtimes.onnx_model(encoder) != first


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
            runtimes.onnx_model(encoder)
        os.chown(planted, os.getuid(), os.getgid())
    planted.chmod(0o666)
    with pytest.raises(UserError, match=f"^{planted}: cache file is writable by other users"):
        runtimes.onnx_model(encoder)
    planted.unlink()
    (tmp_path / "cache").chmod(0o777)
    with pytest.raises(UserError, match=f"^{tmp_path / 'cache'}: cache folder is writable by other users"):
        runtimes.onnx_model(encoder)
    (tmp_path / "cache").chmod(0o700)
    old = os.umask(0o002)
    try:
        path = runtimes.onnx_model(encoder)  # exported by polyhead itself
        assert runtimes.onnx_model(encoder) == path  # and trusted the next time
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


INT8 = ["int8-pc", "int8-keep", "onnx-int8-pc", "onnx-int8-keep", "onnx-int8-static"]
CALIBRATION = "Maria Lopez flew to Rome on Monday .\nThe match in New York ended late .\n" + "the team " * 40


def calibrate(monkeypatch, tmp_path, text: str = CALIBRATION) -> None:
    """A private ONNX cache, and calibration texts for onnx-int8-static."""
    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "calibration.txt").write_text(text)
    monkeypatch.setenv("POLYHEAD_CALIBRATION", str(tmp_path / "calibration.txt"))


@pytest.mark.parametrize("precision", INT8)
def test_runtimes_int8_recipes_stay_close_to_fp32(auto_run, precision, tmp_path, monkeypatch):
    """Each int8 recipe, chosen at spacy.load, returns fp32's EncoderOutput shape for shape, its word vectors
    within cosine 0.995 of fp32's on average and 0.99 at worst. The transformer's Linear weights are scaled
    by 10 first: a random BERT's (std 0.02) leave its output to the embeddings (zeroing a whole FFN moved the
    cosine by 3e-5); scaled, zeroing one FFN moves it by 0.4 and a query equal to its key by 0.1, while
    every recipe measured 1 - cosine under 8e-4 on average and 1.3e-3 at worst."""
    from torch import nn

    from polyhead.export.runtimes import build_runtime

    if precision.startswith("onnx"):
        pytest.importorskip("onnxruntime")
    calibrate(monkeypatch, tmp_path)
    tmp, _ = auto_run
    config = {"components": {"encoder": {"precision": precision}}}
    component = spacy.load(tmp / "out" / "spacy_pipeline", config=config).get_pipe("encoder")
    with torch.no_grad():
        for module in component.encoder.model.encoder.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(10)
    alignment = component.collate.align([text.split() for text in TEXTS])
    with torch.inference_mode():
        out = component.runtime()(alignment)
        fp32 = build_runtime(component.encoder, "fp32")[0](alignment)
    assert component.resolved_precision == precision
    assert out.words.shape == fp32.words.shape and out.cls.shape == fp32.cls.shape  # (B, W, H), (B, H)
    assert torch.equal(out.word_mask, fp32.word_mask) and out.words.dtype == torch.float32
    mask = fp32.word_mask
    cosine = torch.nn.functional.cosine_similarity(out.words[mask], fp32.words[mask], dim=-1)
    assert cosine.mean() > 0.995 and cosine.min() > 0.99, f"{precision}: {cosine.mean()}, {cosine.min()}"
    assert torch.nn.functional.cosine_similarity(out.cls, fp32.cls, dim=-1).min() > 0.995
    assert not torch.equal(out.words, fp32.words)  # it did quantize


@pytest.mark.parametrize("precision", ["int8", "int8-pc", "int8-keep"])
def test_runtimes_torch_int8_quantizes_the_linears_it_names(tiny_bert, precision):
    """int8: every Linear per tensor; int8-pc: per output channel with 7-bit weights and 8-bit inputs;
    int8-keep: the same but KEEP_FP32's Linears, which stay torch fp32 Linears."""
    from torch import nn
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from polyhead.export.quantize import KEEP_FP32, FullRangeLinear
    from polyhead.export.runtimes import build_runtime
    from polyhead.models.encoder import Encoder

    runtime, _ = build_runtime(Encoder(str(tiny_bert), window=30, stride=20), precision)
    kept = {f"encoder.layer.{i % 2}.{name}" for i, name in KEEP_FP32} if precision == "int8-keep" else set()
    linears = {n: m for n, m in runtime.model.named_modules() if isinstance(m, (nn.Linear, DynamicLinear))}
    assert kept <= set(linears) and len(linears) == 13  # 2 layers x 6, and the pooler
    for name, module in linears.items():
        if name in kept:
            assert type(module) is nn.Linear and module.weight.dtype == torch.float32, name
        elif precision == "int8":
            assert type(module) is DynamicLinear and module.weight().qscheme() == torch.per_tensor_affine
        else:
            weight = module.weight()  # per output channel, symmetric (fbgemm reports it affine, zero point 0)
            assert type(module) is FullRangeLinear and weight.qscheme() == torch.per_channel_affine
            assert weight.q_per_channel_scales().shape == (module.out_features,)
            assert not weight.q_per_channel_zero_points().any()
            assert -64 <= weight.int_repr().min() and weight.int_repr().max() <= 63


@pytest.mark.parametrize("precision", ["onnx-int8-pc", "onnx-int8-keep", "onnx-int8-static"])
def test_runtimes_onnx_int8_quantizes_the_linears_it_names(tiny_bert, precision, tmp_path, monkeypatch):
    """Exactly the Linear MatMuls less KEEP_FP32's (none for -pc) are int8, per output channel; attention's
    activation x activation MatMuls stay fp32, and so does every other reader of a quantized tensor (the
    residual sum reads the LayerNorm output the next Linear quantizes)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from polyhead.export import quantize, runtimes
    from polyhead.models.encoder import Encoder

    calibrate(monkeypatch, tmp_path)
    encoder = Encoder(str(tiny_bert), window=30, stride=20)
    linear = quantize.linear_nodes(onnx.load(runtimes.onnx_model(encoder)), [])
    kept = [] if precision == "onnx-int8-pc" else quantize.onnx_nodes(encoder)
    assert len(linear) == 12 and len(kept) == (0 if precision == "onnx-int8-pc" else 2)
    graph = onnx.load(runtimes.onnx_model(encoder, precision)).graph
    producer = {out: node for node in graph.node for out in node.output}
    if precision == "onnx-int8-static":
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        readers = [n for n in graph.node if set(n.input) & dequantized]
        assert all(n.op_type == "MatMul" for n in readers)  # no Add, LayerNorm or Shape reads int8 values
        int8 = {n.name for n in readers if producer[n.input[0]].op_type == "DequantizeLinear"}
    else:
        int8 = {n.name.removesuffix("_quant") for n in graph.node if n.op_type == "MatMulInteger"}
    assert int8 == set(linear) - set(kept)
    weights = {t.name: t for t in graph.initializer}
    fp32 = {n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights}
    assert fp32 == set(kept) and all(
        weights[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in graph.node if n.name in kept
    )
    channel_scales = [
        t for t in graph.initializer if t.name.endswith("_scale") and list(t.dims) in ([32], [64])
    ]
    assert len(channel_scales) == len(int8)  # one scale per output channel, for each int8 weight


def test_runtimes_onnx_int8_static_needs_real_calibration_texts(tiny_bert, tmp_path, monkeypatch):
    """No POLYHEAD_CALIBRATION, or a file without text, stops with a UserError naming it; the calibrated
    file is reused for the same texts and made again for others."""
    pytest.importorskip("onnxruntime")
    from polyhead.errors import UserError
    from polyhead.export import runtimes
    from polyhead.models.encoder import Encoder

    encoder = Encoder(str(tiny_bert), window=30, stride=20)
    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("POLYHEAD_CALIBRATION", raising=False)
    with pytest.raises(UserError, match="set POLYHEAD_CALIBRATION to a UTF-8 file of texts"):
        runtimes.onnx_model(encoder, "onnx-int8-static")
    calibrate(monkeypatch, tmp_path, " \n\n")
    with pytest.raises(UserError, match="calibration.txt \\(POLYHEAD_CALIBRATION\\): holds no text"):
        runtimes.onnx_model(encoder, "onnx-int8-static")
    calibrate(monkeypatch, tmp_path)
    first = runtimes.onnx_model(encoder, "onnx-int8-static")
    stamp = first.stat().st_mtime_ns
    assert runtimes.onnx_model(encoder, "onnx-int8-static") == first and first.stat().st_mtime_ns == stamp
    assert first.stat().st_mode & 0o777 == 0o600
    calibrate(monkeypatch, tmp_path, "An other text to calibrate on .")
    assert runtimes.onnx_model(encoder, "onnx-int8-static") != first


@pytest.mark.parametrize("keep", [((0, "output.nope"),), ((2, "output.dense"),), ((-3, "output.dense"),)])
def test_runtimes_int8_keep_refuses_a_linear_the_model_lacks(tiny_bert, keep):
    from polyhead.errors import UserError
    from polyhead.export.quantize import kept_linears
    from polyhead.models.encoder import Encoder

    model = Encoder(str(tiny_bert), window=30, stride=20).model
    with pytest.raises(UserError, match="has no Linear encoder.layer.*choose precision int8-pc"):
        kept_linears(model, keep)
    assert kept_linears(model, ((0, "output.dense"), (-2, "output.dense"))) == [
        "encoder.layer.0.output.dense"
    ]


def test_runtimes_auto_runs_int8_keep_on_x86_without_bf16_where_it_can_keep_its_layers(tiny_bert, tmp_path):
    """`auto` by CPU class and encoder: int8-keep on AVX2 and AVX512 CPUs without native bf16, bf16 where the
    CPU has it, fp32 elsewhere; an encoder lacking a Linear int8-keep keeps (here a one-layer student of the
    tiny BERT's kind: no layer 1) runs fp32 under `auto`, while an explicit int8-keep is left to refuse it."""
    from polyhead.errors import UserError
    from polyhead.export.runtimes import build_runtime, resolve_precision
    from polyhead.hardware import Hardware
    from polyhead.models.encoder import Encoder

    avx2, avx512 = Hardware("AMD EPYC", "AVX2"), Hardware("Intel Xeon Gold 6148", "AVX512")
    amx = Hardware("Intel Xeon", "AVX512", amx=True, avx512_bf16=True)
    arm = Hardware("Neoverse-N1", "DEFAULT")
    two = Encoder(str(tiny_bert), window=30, stride=20)
    assert [resolve_precision("auto", two, hw) for hw in (avx2, avx512, amx, arm)] == [
        "int8-keep",
        "int8-keep",
        "bf16",
        "fp32",
    ]
    one = Encoder(str(write_tiny_bert(tmp_path, layers=1)), window=30, stride=20)
    assert resolve_precision("auto", one, avx2) == "fp32"
    assert resolve_precision("int8-keep", one, avx2) == "int8-keep"
    assert resolve_precision("auto", one, amx) == "bf16"
    with pytest.raises(UserError, match="int8 keeps layer 1's 'output.dense' in fp32"):
        build_runtime(one, "int8-keep")
