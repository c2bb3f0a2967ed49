"""Memory and time at a million judgments: exports, job plans, annotation queue calls, a dashboard page.

    .venv/bin/python bench/synth_db.py --url sqlite:////tmp/m1.db --judgments 1000000 --labels 200000
    .venv/bin/python bench/scale.py --url sqlite:////tmp/m1.db [--dataset NAME] [--only export,plan]

Each figure comes from its own process (``--one NAME``), so one measurement's memory never counts in
another's: the process imports what it needs, notes its resident memory (``VmRSS``), runs the one
operation as a user starts it and reports the peak (``VmHWM``, the kernel's high-water mark of the
resident set), wall and CPU seconds. The operations:

- ``export:FORMAT``: ``rrm-ui export --dataset NAME --format FORMAT --out FILE`` in the process (the CLI's
  ``main``), every format (``rrm`` with ``--with-reasoning``); the file's size is reported;
- ``plan:new``: ``plan_run`` for a run not judged yet over the data set (every item to do), then every
  planned item read once as a job reads them (nothing kept); ``plan:resume``: ``plan_run`` of the data
  set's main run (what a resumed job plans: only the items without a result) and the same walk;
- ``queue``: ``annotation.next_task`` (a claim, the item, the model's verdict and the queue's progress) on
  the data set's queue over its main run, then ``annotation.submit`` (a label), 10 times by a new
  annotator: the first call's time, the median and the slowest of the later ones, the submits' median;
- ``dashboard``: the first Dashboards page after a restart (a fresh ``Insights``: every read, the tables,
  the open sections' figures and their JSON), as ``bench/dashboard.py`` measures it; ``dashboard:all``: the
  same page with every section open (the compute and accuracy charts too).

The plan walks create a run named ``bench-scale-new`` in the data set once (no results: it never becomes the
main run); the queue calls leave 10 labels of a new annotator ``bench-scale-PID`` each time. Use a copy of a database
that matters.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXPORTS = ("trl", "trl-conversational", "trl-parquet", "rrm", "csv", "parquet")
QUEUE_CALLS = 10
OPERATIONS = (*(f"export:{f}" for f in EXPORTS), "plan:new", "plan:resume", "queue", "dashboard", "dashboard:all")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _largest_dataset(repo: Any) -> str:
    return max(repo.datasets(), key=lambda d: (d.n_items, -d.id)).name


def one(url: str, name: str, dataset: str | None, out_dir: Path) -> dict[str, Any]:
    """Run one operation in this process and return its figures."""
    from rrm_ui.services import annotation
    from rrm_ui.services.exports import main_run
    from rrm_ui.services.judging import plan_run
    from rrm_ui.storage import make_engine
    from rrm_ui.storage.repository import Repository

    repo = Repository(make_engine(url))
    dataset = dataset or _largest_dataset(repo)
    ds = repo.dataset(dataset)
    assert ds is not None, f"no data set {dataset!r}"
    extra: dict[str, Any] = {"dataset": dataset, "items": ds.n_items}
    if name.startswith("dashboard"):
        import plotly  # noqa: F401 - as bench/dashboard.py: imports stay out of the figures

        from rrm_ui.services.insights import Insights, Scope
        from rrm_ui.ui.tabs import dashboard
    base_mb, t0, c0 = _status_mb("VmRSS"), time.perf_counter(), _cpu_s()

    if name.startswith("export:"):
        from rrm_ui.cli import main as cli

        fmt = name.split(":", 1)[1]
        path = out_dir / f"export.{fmt}"
        argv = ["export", "--db", url, "--dataset", dataset, "--format", fmt, "--out", str(path)]
        rc = cli(argv + (["--with-reasoning"] if fmt == "rrm" else []))
        assert rc == 0, f"export {fmt} failed ({rc})"
        extra["file_mb"] = round(path.stat().st_size / 1024**2, 1)
        path.unlink()
    elif name.startswith("plan:"):
        from rrm_ui.domain import JudgeSpec

        run = main_run(repo, ds.id)
        assert run is not None, "the data set has no judge run"
        spec = JudgeSpec.from_run(run)
        plan = plan_run(repo, ds.id, run.name if name == "plan:resume" else "bench-scale-new", spec)
        extra.update(todo=len(plan.todo), already_done=plan.already_done,
                     plan_s=round(time.perf_counter() - t0, 3), plan_peak_mb=round(_status_mb("VmHWM"), 1))  # fmt: skip
        chars = 0
        for it in plan.todo:  # as a job reads its items: one after the other, nothing kept
            chars += len(it.item.query) + sum(len(r) for r in it.item.responses)
        extra["walked_mb_of_text"] = round(chars / 1024**2, 1)
    elif name == "queue":
        from rrm_ui.domain import Choice, QueueSpec

        run = main_run(repo, ds.id)
        spec = QueueSpec(ds.id, run.id if run is not None else None)
        who = f"bench-scale-{os.getpid()}"  # a new annotator each time: their first call counts in full
        calls, submits, task = [], [], None
        for _ in range(QUEUE_CALLS):
            t = time.perf_counter()
            task = annotation.next_task(repo, spec, who)
            calls.append(time.perf_counter() - t)
            if task is None:
                break
            t = time.perf_counter()
            annotation.submit(repo, task, who, Choice.A)
            submits.append(time.perf_counter() - t)
        extra.update(first_ms=round(calls[0] * 1000, 1), later_median_ms=round(statistics.median(calls[1:]) * 1000, 1),
                     later_max_ms=round(max(calls[1:]) * 1000, 1),
                     submit_median_ms=round(statistics.median(submits) * 1000, 1),
                     progress=str(task.progress) if task else None)  # fmt: skip
    elif name.startswith("dashboard"):
        from types import SimpleNamespace

        ctx = SimpleNamespace(insights=Insights(repo), user=lambda request: None, views={})
        view = dashboard.view(ctx, None, Scope(), "run", None if name == "dashboard:all" else dashboard.OPEN)
        extra["json_kb"] = round(sum(len(fig.to_json()) for fig in view.figures.values()) / 1024, 1)
    else:
        raise SystemExit(f"unknown operation {name!r}; choose from {', '.join(OPERATIONS)}")
    return {"op": name, "seconds": round(time.perf_counter() - t0, 2), "cpu_s": round(_cpu_s() - c0, 2),
            "base_mb": round(base_mb, 1), "peak_mb": round(_status_mb("VmHWM"), 1), **extra}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="database URL (a database filled by bench/synth_db.py)")
    p.add_argument("--dataset", help="the data set (default: the one with the most items)")
    p.add_argument("--only", help="comma-separated prefixes of the operations to run (export, plan, queue, ...)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help="where exports are written and removed (default: a temporary folder)")
    args = p.parse_args()
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="rrm-scale-"))
    if args.one:
        print(json.dumps(one(args.url, args.one, args.dataset, out_dir)))
        return
    from bench.common import machine

    print(f"machine: {machine()}; load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"database: {args.url}")
    chosen = [op for op in OPERATIONS if not args.only or any(op.startswith(k) for k in args.only.split(","))]
    for op in chosen:
        cmd = [sys.executable, __file__, "--url", args.url, "--one", op, "--out-dir", str(out_dir)]
        cmd += ["--dataset", args.dataset] if args.dataset else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{op}: failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(figures), flush=True)
    print(f"load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
