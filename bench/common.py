"""Shared pieces of the benchmarks: the prompts (real LLMBar pairs), the tiny model, the machine, percentiles."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLMBAR = ROOT.parent / "shared/data/llmbar/Dataset/LLMBar/Natural/dataset.json"


def llmbar_items(n: int):  # noqa: ANN201
    from rrm_ui.domain import Item

    rows = json.loads(LLMBAR.read_text())
    return [Item(f"nat-{k}", r["input"], (r["output_1"], r["output_2"])) for k, r in enumerate(rows[:n])]


def ensure_tiny_model(path: str | None) -> str:
    if path:
        return path
    target = ROOT / "tiny-model"
    if not (target / "config.json").exists():
        from rrm_ui.dev.tiny_model import build_tiny_model

        build_tiny_model(target)
    return str(target)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo ("?" where it does not say)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "?"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 100) of already sorted values; 0.0 for none."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]
