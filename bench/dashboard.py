"""How fast the Dashboards and Explorer tabs answer on a large database.

Builds a fresh database of about ``--judgments`` judgments and ``--labels`` labels with
:func:`bench.synth_db.populate` (or uses ``--url``; an empty database there is filled first) and
times, in this process, what a request to these tabs runs:

1. the cold path: the SQL reads of everything (``repo.analytics_frames()``), the pandas build
   (``analysis.frames.build``) and ``Insights.frames()`` in all, the first time (a fresh
   ``Insights`` each repeat) and after a write (one label written before each repeat: the rows
   not read yet are read, then everything is built again); the first page after a write and after
   a restart (a fresh ``Insights``);
2. a dashboard page with the frames cached but not the dashboard: ``Insights.dashboard`` (the
   tables), then the figures and tables of ``ui.tabs.dashboard.view`` and their JSON the way
   ``gr.Plot`` sends them (``fig.to_json()``), for several scopes;
3. the same page again, the dashboard (and the built figures, as ``AppContext.views`` keeps
   them) cached;
4. the explorer (``Insights.explore``) for a few filters, a text search and one item's detail;
5. the ``data_version()`` query every request pays, and ``choices()`` (the menus);
6. the peak RSS of the process and the size of the frames in memory.

    .venv/bin/python bench/dashboard.py [--url URL] [--judgments 100000] [--labels 20000] [--repeats 5]
                                        [--server-pid PID]

Writes a few labels (annotator ``bench-writer``) into the database it measures.

Prints Markdown tables (median and max over the repeats, in ms).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402


@dataclass
class Times:
    """Milliseconds per repeat: wall clock, CPU time of this process (all its threads) and of the
    database server (``--server-pid``: that process and its children; empty without)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)


SERVER_PID: int | None = None  # the database server's main process (--server-pid)
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def server_cpu_ms() -> float:
    """CPU time (user + system) of the server process and its children now alive, in ms."""
    if SERVER_PID is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields_[1])
        if pid == SERVER_PID or ppid == SERVER_PID:
            total += (int(fields_[11]) + int(fields_[12])) * TICK_MS
    return total


def timed(fn: Callable[[], Any], repeats: int, before: Callable[[], Any] | None = None) -> tuple[Times, Any]:
    """Times of ``fn()`` per repeat (``before()`` runs untimed ahead of each), and its last value."""
    times, value = Times(), None
    for _ in range(repeats):
        if before is not None:
            before()
        s, c, t = server_cpu_ms(), time.process_time(), time.perf_counter()
        value = fn()
        times.wall.append((time.perf_counter() - t) * 1000)
        times.cpu.append((time.process_time() - c) * 1000)
        if SERVER_PID is not None:
            times.server.append(server_cpu_ms() - s)
    return times, value


def _num(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def ms(times: Times) -> str:
    """Wall clock, median / max."""
    return f"{_num(statistics.median(times.wall))} / {_num(max(times.wall))}"


def cpu(times: Times) -> str:
    """CPU time of this process, median (and of the database server, with ``--server-pid``)."""
    if times.server:
        return f"{_num(statistics.median(times.cpu))} + server {_num(statistics.median(times.server))}"
    return _num(statistics.median(times.cpu))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def frames_bytes(frames: Any) -> int:
    frames_ = (getattr(frames, f.name) for f in fields(frames))
    return sum(int(df.memory_usage(deep=True).sum()) for df in frames_ if hasattr(df, "memory_usage"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def commit() -> str:
    try:
        git = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
        out = subprocess.run(git, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def prepare(url: str | None, judgments: int, labels: int, seed: int) -> tuple[str, str]:
    """The database URL and a line saying where it came from (filled here when new or empty)."""
    from sqlalchemy import inspect, text

    from bench.synth_db import populate
    from rrm_ui.storage import make_engine

    if url is None:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='rrm-bench-dash-')) / 'bench.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            empty = "datasets" not in inspect(conn).get_table_names() or not conn.scalar(
                text("SELECT count(*) FROM datasets")
            )
    finally:
        engine.dispose()
    if not empty:
        return url, "existing database"
    t = time.perf_counter()
    # in a child process, so that the peak RSS measured here is the dashboards' own
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        counts = pool.submit(populate, url, judgments=judgments, labels=labels, seed=seed).result()
    made = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    return url, f"filled by bench.synth_db.populate (seed {seed}) in {time.perf_counter() - t:.1f} s: {made}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="database URL (default: a new SQLite file in a temporary folder); "
                    "an empty database is filled first")  # fmt: skip
    ap.add_argument("--judgments", type=int, default=100_000, help="judgments of a new database (default 100000)")
    ap.add_argument("--labels", type=int, default=20_000, help="labels of a new database (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--text", default="poem", help="the explorer's text search (default: a word that occurs)")
    ap.add_argument("--server-pid", type=int, help="the database server's main process (PostgreSQL's postmaster): "
                    "its CPU time and its children's is reported beside this process's")  # fmt: skip
    ap.add_argument("--cold-only", action="store_true", help="only the cold path (the frames, the first page "
                    "after a write and after a restart)")  # fmt: skip
    args = ap.parse_args()
    n = args.repeats
    global SERVER_PID
    SERVER_PID = args.server_pid

    url, origin = prepare(args.url, args.judgments, args.labels, args.seed)
    rss_start = peak_rss_mb()

    import plotly  # noqa: F401 - imported here so that import time stays out of the first figures

    from rrm_ui.analysis.explorer import Drill
    from rrm_ui.analysis.frames import build
    from rrm_ui.domain import Choice, HumanLabel
    from rrm_ui.services.insights import GOLD, Insights, Scope
    from rrm_ui.storage import make_engine
    from rrm_ui.storage.db import upgrade
    from rrm_ui.storage.repository import Repository
    from rrm_ui.ui.tabs import dashboard

    engine = make_engine(url)
    upgrade(engine)  # a database made by an older version of the code: its schema brought to this one's
    repo = Repository(engine)
    repo.data_version()  # open the pool's first connection outside the timings
    rss_imported = current_rss_mb()

    # 1. the cold path
    t_sql, raw = timed(repo.analytics_frames, n)
    t_build, _ = timed(partial(build, raw), n)
    t_frames, _ = timed(lambda: Insights(repo).frames(), n)
    rows_in = {name: len(getattr(raw, name)) for name in ("items", "runs", "results", "judgments", "labels")}
    mem_raw = frames_bytes(raw)
    del raw
    gc.collect()
    rss_cold = peak_rss_mb()

    insights = Insights(repo)
    frames = insights.frames()
    labelled = frames.items["item_id"].to_numpy()
    writes = iter(range(10**6))

    def written() -> None:  # a real write (one label, a relabel of the same pair from the second on)
        k = next(writes)
        repo.add_label(HumanLabel(annotator="bench-writer", item_db_id=int(labelled[0]),
                                  choice=Choice.A if k % 2 else Choice.B))  # fmt: skip

    t_after, _ = timed(insights.frames, n, before=written)
    frames = insights.frames()
    # what view() needs of AppContext: the insights, the login check and the memo of built figures
    ctx = SimpleNamespace(insights=insights, user=lambda request: None, views={})
    choices = insights.choices()
    dashboard.view(ctx, None, Scope())  # warm-up: plotly imports its figure classes on first use
    judged = frames.judgments
    run = judged["run"].value_counts().index[0]  # the run with the most judgments
    dataset = judged["dataset"].value_counts().index[0]
    annotator = frames.labels["annotator"].value_counts().index[0]
    scopes = {
        "all data sets, humans": Scope(),
        f"data set `{dataset}`": Scope(dataset=dataset),
        f"run `{run}`": Scope(runs=(run,)),
        "reference gold": Scope(reference=GOLD),
        f"reference annotator `{annotator}`": Scope(reference=annotator),
    }

    def uncached() -> None:
        insights._dashboards.clear()
        ctx.views.clear()

    def serialize(view: Any) -> int:
        return sum(len(fig.to_json()) for fig in view.figures.values())  # what gr.Plot.postprocess sends

    from sqlalchemy import insert, select

    from rrm_ui.storage import models as m

    with engine.connect() as conn:  # a stored judgment to retry: the write a running job makes
        tried = conn.execute(select(m.Judgment.__table__).order_by(m.Judgment.id.desc()).limit(1)).mappings().one()

    def judged_once() -> None:  # a real write: one more try of a stored sample
        row = {k: v for k, v in tried.items() if k != "id"} | {"attempt": tried["attempt"] + 1 + next(writes)}
        with engine.begin() as conn:
            conn.execute(insert(m.Judgment).values(row))

    def page(c: Any = ctx, sections: tuple[str, ...] = dashboard.OPEN) -> int:
        """What the Dashboards tab asks for when it opens: the headline and the open sections."""
        return serialize(dashboard.view(c, None, Scope(), "run", sections))

    # what the first page after a write pays: refreshed frames, the open sections' tables (those whose
    # frames changed), their figures and the JSON
    page()
    t_first, _ = timed(page, n, before=written)
    t_first_judged, _ = timed(page, n, before=judged_once)
    t_first_all, _ = timed(lambda: page(sections=tuple(dashboard.SECTIONS)), n, before=written)
    t_folded = {}  # each folded section, opened after a write (the open ones already shown)
    for name in dashboard.SECTIONS:
        if name not in dashboard.OPEN:
            t_folded[name], _ = timed(lambda s=name: page(sections=(s,)), n, before=lambda: (written(), page()))

    def restarted() -> int:  # what the first page after a restart pays: a fresh Insights, nothing cached
        return page(SimpleNamespace(insights=Insights(repo), user=lambda request: None, views={}))

    t_restart, _ = timed(restarted, n)

    started: list[Any] = []

    def warmed() -> None:  # what the app does in a thread when it starts (ui.app.launch)
        started.append(SimpleNamespace(insights=Insights(repo), user=lambda request: None, views={}))
        dashboard.warm(started[-1])

    t_warm, _ = timed(warmed, n)
    t_after_warm, _ = timed(lambda: page(started[-1]), n)
    if args.cold_only:
        print(f"database: {engine.dialect.name}; repeats: {n}; code: {commit()}; machine: {machine()}")
        print(f"load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print(table(["step", "wall", "CPU"], [
            ["`repo.analytics_frames()` (SQL reads)", ms(t_sql), cpu(t_sql)],
            ["`analysis.frames.build`", ms(t_build), cpu(t_build)],
            ["`Insights.frames()` first time", ms(t_frames), cpu(t_frames)],
            ["`Insights.frames()` after a write", ms(t_after), cpu(t_after)],
            ["first page after a write: a label (headline and the open sections)", ms(t_first), cpu(t_first)],
            ["first page after a write: a judgment", ms(t_first_judged), cpu(t_first_judged)],
            *[[f"then the folded section `{k}` opened", ms(t), cpu(t)] for k, t in t_folded.items()],
            ["first page after a write, every section open", ms(t_first_all), cpu(t_first_all)],
            ["first page after a restart (headline and the open sections)", ms(t_restart), cpu(t_restart)],
            ["the app's warm-up at start (`dashboard.warm`: reads, build, the first page)", ms(t_warm), cpu(t_warm)],
            ["first page after a restart, the warm-up done", ms(t_after_warm), cpu(t_after_warm)],
        ]))  # fmt: skip
        return

    # 2. and 3. dashboards
    dash_rows, cached_rows = [], []
    for name, scope in scopes.items():
        t_compute, _ = timed(lambda s=scope: insights.dashboard(s).compute_all(), n, before=uncached)
        # the dashboard cached, the figures not: what building them costs
        t_view, view = timed(lambda s=scope: dashboard.view(ctx, None, s), n, before=ctx.views.clear)
        t_json, size = timed(lambda v=view: serialize(v), n)
        t_total, _ = timed(lambda s=scope: serialize(dashboard.view(ctx, None, s)), n, before=uncached)
        dash_rows.append([name, ms(t_compute), ms(t_view), ms(t_json), ms(t_total), cpu(t_total),
                          f"{size / 1024:,.0f} KB"])  # fmt: skip
        t_hit, _ = timed(lambda s=scope: insights.dashboard(s), n)
        t_page, _ = timed(lambda s=scope: serialize(dashboard.view(ctx, None, s)), n)
        cached_rows.append([name, ms(t_hit), ms(t_page), cpu(t_page)])

    # 4. the explorer
    item_id = int(judged["item_id"].value_counts().index[0])  # the item with the most judgments
    drills = {
        "`Drill()` (everything)": Drill(),
        "`flags=disagree_human`": Drill(flags=("disagree_human",)),
        "`flags=split_votes`": Drill(flags=("split_votes",)),
        "`flags=inconsistent`": Drill(flags=("inconsistent",)),
        "confusion cell humans A, model B": Drill(reference="humans", ref_choice="A", model_choice="B"),
        "`bucket=2k-4k`": Drill(bucket="2k-4k"),
        "`run` + `sort=most reasoning tokens`": Drill(run=run, sort="most reasoning tokens"),
        f"text `{args.text}` (SQL ILIKE)": Drill(text=args.text),
        "text that occurs nowhere (SQL ILIKE, full scan)": Drill(text="no such phrase xq"),
    }
    explore_rows = []
    for name, drill in drills.items():
        t_explore, (_, matched) = timed(lambda d=drill: insights.explore(d), n)
        explore_rows.append([name, f"{matched:,}", ms(t_explore), cpu(t_explore)])
    t_item, detail = timed(lambda: insights.item(item_id), n)
    explore_rows.append([f"`item({item_id})` ({len(detail.judgments)} judgments with text)", "1", ms(t_item),
                         cpu(t_item)])  # fmt: skip

    # 5. per request
    t_version, _ = timed(repo.data_version, max(50, n))
    t_choices, _ = timed(insights.choices, n)

    # 6. memory
    mem_frames = frames_bytes(insights.frames())
    gc.collect()

    print(f"machine: {machine()}; affinity: {len(os.sched_getaffinity(0))} core(s) {sorted(os.sched_getaffinity(0))}")
    print(f"code: {commit()}")
    print(f"database: {engine.url.render_as_string(hide_password=True)} ({engine.dialect.name}), {origin}")
    print("rows read: " + ", ".join(f"{k} {v:,}" for k, v in rows_in.items()))
    print(f"repeats: {n}; scopes: {len(choices['datasets'])} data sets, {len(choices['runs'])} runs, "
          f"{len(choices['annotators'])} annotators")  # fmt: skip
    print()
    print("Wall clock in ms, median / max over the repeats; CPU: this process's CPU time in ms, median (and")
    print("the database server's, with --server-pid).\n")
    print(f"load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("**Cold path: the frames**\n")
    print(table(["step", "wall", "CPU"], [
        ["`repo.analytics_frames()` (SQL reads)", ms(t_sql), cpu(t_sql)],
        ["`analysis.frames.build`", ms(t_build), cpu(t_build)],
        ["`Insights.frames()` in all, first time (fresh instance)", ms(t_frames), cpu(t_frames)],
        ["`Insights.frames()` after a write (version changed)", ms(t_after), cpu(t_after)],
        ["first dashboard page after a label (all data sets; headline and the open sections): frames, tables, "
         "figures, JSON", ms(t_first), cpu(t_first)],
        ["the same after a judgment", ms(t_first_judged), cpu(t_first_judged)],
        *[[f"then the folded section `{k}` opened", ms(t), cpu(t)] for k, t in t_folded.items()],
        ["first page after a label with every section open", ms(t_first_all), cpu(t_first_all)],
        ["first dashboard page after a restart (all data sets, a fresh `Insights`): all reads, build, open sections",
         ms(t_restart), cpu(t_restart)],
        ["the app's warm-up at start (`dashboard.warm`: reads, build, the first page)", ms(t_warm), cpu(t_warm)],
        ["first page after a restart, the warm-up done", ms(t_after_warm), cpu(t_after_warm)],
    ]))  # fmt: skip
    print()
    print("**Dashboard page, frames cached, dashboard not cached**\n")
    print(table(["scope", "`dashboard()` compute", "`view()` figures + tables (built)", "figures to JSON",
                 "page in all", "page in all, CPU", "JSON size"], dash_rows))  # fmt: skip
    print()
    print("**The same dashboard again, cached**\n")
    print(table(["scope", "`dashboard()` (cache hit)", "`view()` (figures memoised) + JSON", "CPU"],
                cached_rows))  # fmt: skip
    print()
    print("**Explorer** (frames cached)\n")
    print(table(["query", "rows matched", "wall", "CPU"], explore_rows))
    print()
    print("**Every request, and memory**\n")
    print(table(["what", "figure"], [
        ["`repo.data_version()`", f"{ms(t_version)} ms (median / max of {max(50, n)})"],
        ["`Insights.choices()` (menus)", f"{ms(t_choices)} ms"],
        ["derived frames in memory (`memory_usage(deep=True)`)", f"{mem_frames / 1024**2:,.1f} MB"],
        ["raw `AnalyticsFrames` in memory", f"{mem_raw / 1024**2:,.1f} MB"],
        ["RSS after the imports, before the first read", f"{rss_imported:,.0f} MB"],
        ["peak RSS: after populate (run in a child) / after the cold path / at the end",
         f"{rss_start:,.0f} / {rss_cold:,.0f} / {peak_rss_mb():,.0f} MB"],
        ["RSS at the end (one set of frames and the dashboards above cached)", f"{current_rss_mb():,.0f} MB"],
    ]))  # fmt: skip
    engine.dispose()


if __name__ == "__main__":
    main()
