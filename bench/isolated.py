"""Each benchmark configuration in a fresh process: peak RSS is per process, and runs share no caches."""

from __future__ import annotations

import json
import subprocess
import sys


def run_each(script: str, args: list[str], names) -> dict[str, dict]:
    """`python script *args --only NAME` for every name; each prints its result as JSON on its last line."""
    results = {}
    for name in names:
        cmd = [sys.executable, script, *args, "--only", name]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results
