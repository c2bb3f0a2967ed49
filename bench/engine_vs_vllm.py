"""Throughput of the paths users run, against bare ``vllm.LLM.generate`` on the same workload.

Three sides, each in its own process, judging the same RRM prompts over LLMBar pairs with the same
sampling (temperature 0.6, seed 1234, the same token budget):

- ``bare``: ``vllm.LLM.generate`` on every prompt at once (``n`` = votes; with ``--swap`` both orders);
- ``job``: a batch job as the app runs it: ``Runtime`` (in-process vLLM) + ``JobManager.start`` over
  a stored data set in SQLite, results stored as they finish;
- ``cli``: ``rrm-ui judge --dataset NAME --db URL --backend vllm ...`` as a user types it.

The job and the command count their own completion tokens and active seconds (the job's ``tokens``
and ``active_s``, from the first item started to the last stored), so neither's model loading is
timed; bare vLLM times ``generate`` after a warm-up. Prints tokens per second and the ratios (aim:
0.95 or better).

    .venv/bin/python bench/engine_vs_vllm.py [--model DIR] [--prompts 32] [--votes 1] [--swap]
        [--max-tokens 512] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import LLMBAR, ensure_tiny_model, llmbar_items, machine  # noqa: E402

ENGINE = dict(dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=8192)
SEED = 1234


def write_pairs(path: Path, n: int) -> Path:
    """The first ``n`` LLMBar Natural pairs as a pairwise JSONL file (the user's input)."""
    rows = json.loads(LLMBAR.read_text())[:n]
    with path.open("w") as f:
        for k, r in enumerate(rows):
            f.write(json.dumps({"id": f"nat-{k}", "query": r["input"], "response_a": r["output_1"],
                                "response_b": r["output_2"]}) + "\n")  # fmt: skip
    return path


def run_bare(args: argparse.Namespace) -> dict:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from rrm_ui.backends.models import chat_prompt_ids
    from rrm_ui.protocol import RRM_FORMAT

    items = llmbar_items(args.prompts)
    tok = AutoTokenizer.from_pretrained(args.model)
    orders = [(0, 1), (1, 0)] if args.swap else [(0, 1)]
    messages = [RRM_FORMAT.messages(it.query, it.responses[a], it.responses[b]) for it in items for a, b in orders]
    prompts = [TokensPrompt(prompt_token_ids=chat_prompt_ids(tok, m)) for m in messages]
    # the same engine settings as rrm-ui's backend on CPU (it disables chunked prefill there)
    llm = LLM(model=args.model, enable_prefix_caching=True, enable_chunked_prefill=False, **ENGINE)
    llm.generate(prompts[:2], SamplingParams(max_tokens=16, seed=1), use_tqdm=False)
    params = SamplingParams(n=args.votes, temperature=0.6, top_p=1.0, max_tokens=args.max_tokens, seed=SEED)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {"tokens": tokens, "seconds": wall}


def settings_for(args: argparse.Namespace, db: str):  # noqa: ANN201
    from rrm_ui.config import Settings

    return Settings(database_url=db, backend="vllm", model=args.model, dtype=ENGINE["dtype"],
                    enforce_eager=True, gpu_memory_utilization=ENGINE["gpu_memory_utilization"],
                    max_model_len=ENGINE["max_model_len"], max_tokens=args.max_tokens, seed=SEED)  # fmt: skip


def run_job(args: argparse.Namespace) -> dict:
    from rrm_ui.domain import Compute, Sampling
    from rrm_ui.services import open_repository
    from rrm_ui.services.datasets import import_file
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import ModelStatus, Runtime

    tmp = Path(args.workdir)
    settings = settings_for(args, f"sqlite:///{tmp / 'job.db'}")
    repo = open_repository(settings)
    data = import_file(repo, write_pairs(tmp / "pairs.jsonl", args.prompts), name="bench")
    warm = import_file(repo, write_pairs(tmp / "warm.jsonl", 2), name="warm")
    runtime = Runtime(settings, repo)
    runtime.load_model()
    state = runtime.wait_for_model(600)
    if state.status is not ModelStatus.READY:
        raise SystemExit(f"the model did not load: {state.message}")
    manager = JobManager(repo, runtime)
    try:
        w = manager.start(warm.id, compute=Compute(), sampling=Sampling(max_tokens=16, seed=1), strategy="pair",
                          owner=None)  # fmt: skip
        manager.wait(w.id, 600)
        compute = Compute(votes=args.votes, swap=args.swap)
        sampling = Sampling(temperature=0.6, top_p=1.0, max_tokens=args.max_tokens, seed=SEED)
        job = manager.start(data.id, compute=compute, sampling=sampling, strategy="pair", owner=None)
        job = manager.wait(job.id, 3600)
    finally:
        runtime.close()
    if job.items_done != args.prompts:
        raise SystemExit(f"the job ended {job.status}: {job.message}")
    return {"tokens": job.tokens, "seconds": job.active_s}


def run_cli(args: argparse.Namespace) -> dict:
    from rrm_ui.config import Settings
    from rrm_ui.services import open_repository

    tmp = Path(args.workdir)
    db = f"sqlite:///{tmp / 'cli.db'}"
    pairs = write_pairs(tmp / "pairs.jsonl", args.prompts)
    cmd = [sys.executable, "-m", "rrm_ui", "judge", str(pairs), "--dataset", "bench", "--db", db, "--quiet",
           "--backend", "vllm", "--model", args.model, "--dtype", ENGINE["dtype"], "--enforce-eager",
           "--gpu-memory-utilization", str(ENGINE["gpu_memory_utilization"]),
           "--max-model-len", str(ENGINE["max_model_len"]), "--strategy", "pair", "--votes", str(args.votes),
           "--max-tokens", str(args.max_tokens), "--seed", str(SEED), "--out", str(tmp / "out.jsonl")]  # fmt: skip
    if args.swap:
        cmd.append("--swap")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"rrm-ui judge failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    repo = open_repository(Settings(database_url=db))
    [job] = repo.jobs(None, None)
    ids = [json.loads(line)["id"] for line in (tmp / "out.jsonl").read_text().splitlines()]
    if ids != [f"nat-{k}" for k in range(args.prompts)]:
        raise SystemExit("the output file is not in input order")
    return {"tokens": job.tokens, "seconds": job.active_s}


SIDES = {"bare": run_bare, "job": run_job, "cli": run_cli}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--votes", type=int, default=1)
    p.add_argument("--swap", action="store_true", help="both presentation orders")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each side; the best is kept")
    p.add_argument("--sides", default="bare,job,cli")
    p.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:  # a child process: vLLM also prints to stdout, so the figures go to a file
        Path(args.result).write_text(json.dumps(SIDES[args.side](args)))
        return
    args.model = ensure_tiny_model(args.model)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    best: dict[str, float] = {}
    sides = args.sides.split(",")
    for _ in range(args.repeats):
        for side in sides:
            with tempfile.TemporaryDirectory() as tmp:
                result = Path(tmp) / "result.json"
                cmd = [sys.executable, __file__, "--side", side, "--model", args.model, "--result", str(result),
                       "--workdir", tmp, "--prompts", str(args.prompts), "--votes", str(args.votes),
                       "--max-tokens", str(args.max_tokens)] + (["--swap"] if args.swap else [])  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0 or not result.exists():
                    sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
                r = json.loads(result.read_text())
            tps = r["tokens"] / r["seconds"]
            print(f"{side:>4}: {r['tokens']} tokens in {r['seconds']:.2f}s = {tps:,.0f} tokens/s", flush=True)
            best[side] = max(best.get(side, 0.0), tps)
    orders = "both orders" if args.swap else "one order"
    print(f"machine: {machine()}; {args.prompts} pairs x {args.votes} votes, {orders}, max_tokens {args.max_tokens}")
    for side in sides:
        if side != "bare" and "bare" in best:
            print(f"{side} / bare vLLM throughput (best of {args.repeats}): {best[side] / best['bare']:.3f}")


if __name__ == "__main__":
    main()
