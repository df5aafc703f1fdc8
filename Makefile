.PHONY: install test test-all lint format train

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
