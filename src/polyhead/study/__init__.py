"""Studies built on polyhead.report: the runner (scripts/study.py) and its results page."""
