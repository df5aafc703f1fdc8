"""Each benchmark configuration in a fresh process: peak RSS is per process, and runs share no caches."""

from __future__ import annotations

import json
import subprocess
import sys


def run_each(script: str, args: list[str], names, python: dict[str, str] | None = None) -> dict[str, dict]:
    """`python script *args --only NAME` for every name; each prints its result as JSON on its last line.
    `python` runs some names under another interpreter (e.g. a venv without polyhead); default: this one."""
    results = {}
    for name in names:
        cmd = [(python or {}).get(name, sys.executable), script, *args, "--only", name]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name!r} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def run_rounds(
    script: str, args: list[str], names: list[str], rounds: int, python: dict[str, str] | None = None
) -> dict[str, dict]:
    """`run_each` `rounds` times, alternating the configurations (a shared machine's load falls on all
    alike); each configuration keeps its median round (the faster of the middle two for an even count: with
    two rounds, the faster one), with every round's words/s beside it."""
    runs = [run_each(script, args, names, python) for _ in range(rounds)]
    results = {}
    for name in names:
        ordered = sorted((r[name] for r in runs), key=lambda r: r["words_per_sec"])
        results[name] = {
            **ordered[len(ordered) // 2],
            "words_per_sec_rounds": [r["words_per_sec"] for r in ordered],
        }
    return results
