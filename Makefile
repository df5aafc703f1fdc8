.PHONY: install test test-all lint format train params

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
