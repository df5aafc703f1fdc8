.PHONY: install test test-all lint format train params study study-dry-run study-check

install:
	pip install -e ".[dev]"

test:
	pytest -m "not slow"

test-all:
	pytest

lint:
	ruff check src tests bench scripts
	ruff format --check src tests bench scripts

format:
	ruff format src tests bench scripts

train:
	python train.py

# params.yaml for `dvc repro`: conf/pipeline.yaml composed the way `dvc exp run` composes it
params:
	python -c "from dvc.utils.hydra import compose_and_dump as c; c('params.yaml', '$(CURDIR)/conf', None, 'pipeline', '$(CURDIR)', [])"

# Issue 13's study (docs/study.md): every arm, size and seed of conf/study/sharing.yaml, then the report and the page
CORPORA ?= ../shared/data
JOBS ?= 1
study:
	python scripts/study.py run --jobs $(JOBS) --replace paths.corpora=$(CORPORA)

study-dry-run:
	python scripts/study.py run --dry-run paths.corpora=$(CORPORA)

# docs/study.md and docs/study/*.csv against the study's runs in MLflow
study-check:
	python scripts/study.py check
