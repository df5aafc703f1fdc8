"""`python -m polyhead.export`: a trained run -> spaCy pipeline -> package built by `spacy package`, loaded
without polyhead's training stack (fast: from the package folder; slow: pip-installed into a fresh venv)."""

import json
import subprocess
import sys
import venv

import pytest
import spacy
from conftest import compose_config, compose_train
from mlflow.tracking import MlflowClient

from polyhead.errors import UserError
from polyhead.export.__main__ import export
from polyhead.export.package import TRAINING_ONLY
from polyhead.training.run import run

TEXTS = [
    "Maria Lopez flew to New York on Monday.",
    "",
    "  ",
    "Emoji 🎉 here",
    "the team won in rome . " * 400,
]

# Runs in a separate interpreter where `import polyhead` is impossible, as in a venv without polyhead:
# imports the package from its folder, checks no training library was imported, prints the predictions.
LOAD_WITHOUT_POLYHEAD = """
import importlib, json, sys
if sys.argv[3] == "folder":  # polyhead made unimportable; the package imported from its folder
    sys.modules["polyhead"] = None
    sys.path.insert(0, sys.argv[1])
    nlp = importlib.import_module(sys.argv[2]).load()
else:
    import spacy
    nlp = spacy.load(sys.argv[2])
docs = list(nlp.pipe(json.loads(sys.stdin.read()), batch_size=2))
found = {m.split(".")[0] for m in sys.modules}
print(json.dumps({
    "polyhead": sys.modules["polyhead"].__file__,
    "training_only": sorted(found & set(sys.argv[4].split(","))),
    "predictions": [[[t.pos_ for t in d], [[e.start, e.end, e.label_] for e in d.ents], d.cats]
                    for d in docs],
}))
"""


def predictions(nlp):
    return [
        [[t.pos_ for t in d], [[e.start, e.end, e.label_] for e in d.ents], d.cats] for d in nlp.pipe(TEXTS)
    ]


def compose_export(tmp, *overrides):
    return compose_config("export", tmp, list(overrides), tmp / "export")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("package")
    run(compose_train(tmp, tiny_bert, "trainer.max_epochs=1", "export.name=tiny_demo", "export.license=MIT"))
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return tmp, client, r.info.run_id


@pytest.fixture(scope="module")
def package_dir(trained):
    tmp, _, run_id = trained
    return export(compose_export(tmp, f"run_id={run_id}", "package=true", "build=[]", "export.version=1.2.3"))


def test_package_folder_has_meta_runtime_code_and_no_polyhead_requirement(package_dir):
    assert package_dir.name == "en_tiny_demo-1.2.3"
    meta = json.loads((package_dir / "meta.json").read_text())
    assert (meta["name"], meta["version"], meta["license"]) == ("tiny_demo", "1.2.3", "MIT")
    names = {r.split(">")[0] for r in meta["requirements"]}
    assert {"torch", "transformers", "safetensors"} <= names and not any("polyhead" in r for r in names)
    code = package_dir / "en_tiny_demo"
    assert "from . import polyhead_components" in (code / "__init__.py").read_text()
    vendored = code / "en_tiny_demo-1.2.3" / "polyhead"
    assert (vendored / "export" / "components.py").is_file() and (
        vendored / "models" / "heads" / "ner.py"
    ).is_file()
    assert not (vendored / "training").exists() and not (vendored / "pretrain").exists()


def test_package_loads_without_polyhead_and_predicts_like_the_run(trained, package_dir):
    tmp, *_ = trained
    expected = predictions(spacy.load(tmp / "out" / "spacy_pipeline"))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_POLYHEAD,
            str(package_dir),
            "en_tiny_demo",
            "folder",
            ",".join(TRAINING_ONLY),
        ],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout)
    assert str(package_dir) in got["polyhead"]  # the vendored copy ran, not the installed polyhead
    assert got["training_only"] == []
    for (tags, ents, cats), (e_tags, e_ents, e_cats) in zip(got["predictions"], expected):
        assert tags == e_tags and ents == e_ents
        assert cats == pytest.approx(e_cats, abs=1e-5)
    assert all(tags for tags in got["predictions"][-1][0])  # a 3,200-token text is fully tagged


def test_package_export_from_checkpoint_and_bad_arguments(trained, tmp_path):
    tmp, *_ = trained
    ckpt = next((tmp / "out" / "checkpoints").glob("best*.ckpt"))
    (tmp_path / "params.yaml").write_text("export: {version: 9.9.9, precision: int8}\n")
    overrides = [f"export_from={tmp_path / 'params.yaml'}", "export.precision=bf16"]  # the command line wins
    pipeline = export(compose_export(tmp_path, f"checkpoint={ckpt.parent}", *overrides))
    nlp = spacy.load(pipeline)
    assert nlp.get_pipe("encoder").precision == "bf16" and nlp.meta["version"] == "9.9.9"
    assert [t.pos_ for t in nlp("Maria Lopez flew .")] == [
        t.pos_ for t in spacy.load(tmp / "out" / "spacy_pipeline")("Maria Lopez flew .")
    ]
    with pytest.raises(UserError, match="exactly one"):
        export(compose_export(tmp_path))
    with pytest.raises(ValueError, match="identifier"):
        export(
            compose_export(tmp_path, f"checkpoint={ckpt}", "package=true", "build=[]", "export.name=my-model")
        )
    (tmp_path / "not.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match="nowhere.ckpt"):
        export(compose_export(tmp_path, f"checkpoint={tmp_path / 'nowhere.ckpt'}"))
    with pytest.raises(UserError, match=r"not\.ckpt: cannot read the checkpoint \(truncated"):
        export(compose_export(tmp_path, f"checkpoint={tmp_path / 'not.ckpt'}"))


@pytest.mark.slow
def test_package_wheel_installs_into_a_fresh_venv_with_only_the_runtime(trained, tmp_path):
    """pip install the wheel into a venv that has never seen polyhead, Lightning, Hydra or MLflow."""
    tmp, client, run_id = trained
    package = export(
        compose_export(
            tmp_path,
            f"run_id={run_id}",
            f"tracking_uri=sqlite:///{tmp}/mlruns/mlflow.db",
            "package=true",
            "build=[sdist,wheel]",
        )
    )
    wheel = next((package / "dist").glob("*.whl"))
    assert next((package / "dist").glob("*.tar.gz"))
    assert {"package/" + wheel.name} <= {a.path for a in client.list_artifacts(run_id, "package")}
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = str(env / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the local CPU build, before the range pulls CUDA
    subprocess.run([*pip, str(wheel)], check=True)
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    assert "en-tiny-demo" in frozen.lower().replace("_", "-")
    for absent in ("polyhead", "pytorch-lightning", "hydra-core", "mlflow", "torchmetrics"):
        assert f"\n{absent}==" not in "\n" + frozen.lower()
    out = subprocess.run(
        [python, "-c", LOAD_WITHOUT_POLYHEAD, "", "en_tiny_demo", "installed", ",".join(TRAINING_ONLY)],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1"},
    )
    got = json.loads(out.stdout)
    assert got["training_only"] == [] and "site-packages/en_tiny_demo" in got["polyhead"]
    expected = predictions(spacy.load(tmp / "out" / "spacy_pipeline"))
    for (tags, ents, cats), (e_tags, e_ents, e_cats) in zip(got["predictions"], expected):
        assert tags == e_tags and ents == e_ents
        assert cats == pytest.approx(e_cats, abs=1e-5)
