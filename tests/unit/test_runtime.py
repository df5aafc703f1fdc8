import subprocess
import sys

TRAINING_STACK = ("pytorch_lightning", "lightning", "hydra", "mlflow", "torchmetrics", "dvc")


def test_runtime_export_components_import_no_training_stack():
    """The spaCy components run on spaCy + torch + transformers alone (the exported model's runtime)."""
    code = (
        "import sys, polyhead.export.components, polyhead.models.heads.ner, polyhead.models.heads.textcat; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAINING_STACK!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
