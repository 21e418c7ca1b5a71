"""What the benchmark scripts share: recording each result as it comes, and mean ± sd."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def record_all(jobs, out: str | Path) -> list[dict]:
    """Run each job (a no-argument callable returning a dict), appending every result to a JSONL file
    and printing it at once, so a long benchmark stopped half-way keeps what it measured."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for job in jobs:
        row = job()
        rows.append(row)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return rows


def mean_sd(values: list[float], digits: int = 2) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"
