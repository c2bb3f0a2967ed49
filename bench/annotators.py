"""Many annotators labelling at once through the app's HTTP API: labels per second and response times.

Each simulated annotator is a thread with its own ``httpx.Client``: it logs in through the real
login form (``POST /login``, the cookie is kept), picks a ``session_hash`` of its own (so the
Annotate tab's ``gr.State`` follows it, as in a browser tab), starts a queue with
``annotate_start`` (data set, no run, "Unlabelled items", no subset, not blind), then labels in a
loop with a random ``annotate_choose_{A,B,tie,both_bad}`` whose note carries a unique id
(``load:<annotator>:<sequence>``) until the time is up or its queue is empty. Every call is
Gradio's two-step call protocol: ``POST /gradio_api/call/<api_name>`` returns an event id, and
``GET /gradio_api/call/<api_name>/<event_id>`` streams the result (server-sent events:
``complete`` or ``error``). A call's response time spans both requests.

A call counts as an error when the HTTP status is not 200, the stream ends in an ``error`` event or
without a result, the status text mentions an error, or a choice is answered without "Saved".
:func:`run_load` returns a :class:`LoadReport` with every label the client believes it stored
(``(annotator, note)``), so a test can compare them with the ``labels`` table.

Used by ``tests/test_load_annotators.py`` (a minute, 30 annotators, correctness only) and as a
benchmark (``main``), which builds a fresh SQLite database (a data set of ``--items`` pairs made
from LLMBar Natural texts with unique queries, ``--annotators`` accounts), starts ``python app.py``
on it with a model that cannot load (labelling needs none), runs the load and prints the figures:

    .venv/bin/python bench/annotators.py [--annotators 30] [--seconds 60] [--items 10000] [--overlap 1]

By default the app runs on CPU 0 and this driver on the other CPUs (``--no-pin`` to share them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import LLMBAR, cpu_model, percentile  # noqa: E402

DATASET = "load-pairs"
NO_RUN = "(none: collect preferences without a model verdict)"  # rrm_ui.ui.tabs.annotate.NO_RUN (checked in main)
QUEUE = "Unlabelled items"
CHOICES = ("A", "B", "tie", "both_bad")
STATUS = 5  # index of the status text among the Annotate tab's outputs (progress, query, a, b, model, status, ...)
CALL_TIMEOUT_S = 120.0


@dataclass
class Annotator:
    """What one simulated annotator did."""

    name: str
    labels: list[tuple[str, str]] = field(default_factory=list)  # (note, choice) of each label the app saved
    saved_at: list[float] = field(default_factory=list)  # perf_counter() when each of them was answered
    times: dict[str, list[float]] = field(default_factory=dict)  # call type -> response times (s)
    errors: list[str] = field(default_factory=list)
    ran_out: bool = False  # the queue had nothing left for this annotator


@dataclass
class LoadReport:
    annotators: list[Annotator]
    seconds: float  # from the moment every annotator had logged in to the last answer
    start: float = 0.0  # perf_counter() at that moment

    @property
    def submitted(self) -> list[tuple[str, str]]:
        """(annotator, note) of every label the client believes the app stored."""
        return [(a.name, note) for a in self.annotators for note, _ in a.labels]

    @property
    def errors(self) -> list[str]:
        return [e for a in self.annotators for e in a.errors]

    @property
    def labels_per_s(self) -> float:
        return len(self.submitted) / self.seconds if self.seconds > 0 else 0.0

    def times(self, kind: str) -> list[float]:
        return sorted(t for a in self.annotators for t in a.times.get(kind, ()))

    def kinds(self) -> list[str]:
        return sorted({k for a in self.annotators for k in a.times})

    def windows(self, width: float = 10.0) -> list[float]:
        """Labels per second in consecutive windows of ``width`` seconds (does the rate hold up?)."""
        counts = [0] * max(1, int(-(-self.seconds // width)))
        for a in self.annotators:
            for t in a.saved_at:
                counts[min(len(counts) - 1, int((t - self.start) // width))] += 1
        return [c / width for c in counts]

    def table(self) -> str:
        """Response times per call type (milliseconds) as a Markdown table."""
        rows = ["| call | n | p50 ms | p95 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|---:|"]
        for kind in self.kinds():
            ts = self.times(kind)
            ms = [f"{1000 * percentile(ts, q):.0f}" for q in (50, 95, 99, 100)]
            rows.append(f"| {kind} | {len(ts)} | {' | '.join(ms)} |")
        return "\n".join(rows)

    def summary(self) -> str:
        ran_out = sum(a.ran_out for a in self.annotators)
        lines = [
            f"annotators: {len(self.annotators)}; labels stored: {len(self.submitted)} in {self.seconds:.1f} s "
            f"= {self.labels_per_s:.1f} labels/s; errors: {len(self.errors)}; annotators whose queue ran out: "
            f"{ran_out}",
            "",
            self.table(),
            "",
            "labels/s per 10 s: " + ", ".join(f"{r:.1f}" for r in self.windows()),
        ]
        if self.errors:
            lines += ["", "first errors:", *(f"- {e}" for e in self.errors[:10])]
        return "\n".join(lines)


# --- the client ----------------------------------------------------------------------------------


class CallFailed(Exception):
    pass


class AppClient:
    """One annotator's logged-in HTTP session with its own Gradio session hash."""

    def __init__(self, url: str, name: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=CALL_TIMEOUT_S)
        self.session_hash = uuid.uuid4().hex[:12]
        self.name, self.password = name, password

    def login(self) -> None:
        r = self.http.post("/login", data={"username": self.name, "password": self.password})
        if r.status_code != 200 or not any(c.startswith("access-token") for c in self.http.cookies):
            raise CallFailed(f"login of {self.name} failed: HTTP {r.status_code} {r.text[:200]}")

    def call(self, api_name: str, data: list[Any]) -> list[Any]:
        """One event through the queue: the outputs of its ``complete`` message, else CallFailed."""
        r = self.http.post(f"/gradio_api/call/{api_name}", json={"data": data, "session_hash": self.session_hash})
        if r.status_code != 200:
            raise CallFailed(f"{api_name}: HTTP {r.status_code} {r.text[:200]}")
        event_id = r.json()["event_id"]
        event = None
        deadline = time.monotonic() + CALL_TIMEOUT_S  # heartbeats keep the stream alive: the read timeout never fires
        with self.http.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as s:
            if s.status_code != 200:
                raise CallFailed(f"{api_name}: HTTP {s.status_code} on the result stream")
            for line in s.iter_lines():
                if time.monotonic() > deadline:
                    raise CallFailed(f"{api_name}: no result after {CALL_TIMEOUT_S:.0f} s")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line[5:])
                    if event == "error":
                        raise CallFailed(f"{api_name}: error event {str(payload)[:300]}")
                    return payload
        raise CallFailed(f"{api_name}: the result stream ended without a result (last event {event!r})")

    def close(self) -> None:
        self.http.close()


def _status(outputs: list[Any]) -> str:
    return str(outputs[STATUS]) if len(outputs) > STATUS else ""


def _annotate(
    client: AppClient,
    me: Annotator,
    dataset: str,
    rng: random.Random,
    ready: threading.Barrier,
    clock: dict[str, float],
) -> None:
    def timed(kind: str, api_name: str, data: list[Any]) -> list[Any]:
        t = time.perf_counter()
        try:
            return client.call(api_name, data)
        finally:
            me.times.setdefault(kind, []).append(time.perf_counter() - t)

    try:
        t = time.perf_counter()
        client.login()
        me.times["login"] = [time.perf_counter() - t]
    except (CallFailed, httpx.HTTPError) as e:
        me.errors.append(f"{me.name}: {e}")
        ready.abort()
        return
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        return
    deadline = clock["start"] + clock["seconds"]
    try:
        timed("load", "annotate_datasets", [])  # as the page's load event: the data set list (session state)
        status = _status(timed("start", "annotate_start", [dataset, NO_RUN, QUEUE, "", False]))
        seq = 0
        while True:
            if "error" in status.lower():
                me.errors.append(f"{me.name}: status {status[:200]!r}")
                return
            if "Nothing left" in status:
                me.ran_out = True
                return
            if time.perf_counter() >= deadline:
                return
            seq += 1
            note = f"load:{me.name}:{seq}"
            choice = rng.choice(CHOICES)
            status = _status(timed("choose", f"annotate_choose_{choice}", [note]))
            if not status.startswith("Saved:"):
                me.errors.append(f"{me.name}: choice {seq} answered {status[:200]!r}")
                return
            me.labels.append((note, choice))
            me.saved_at.append(time.perf_counter())
    except Exception as e:  # any failure is an error of this annotator: reported, never lost
        me.errors.append(f"{me.name}: {type(e).__name__}: {e}")
    finally:
        clock[me.name] = time.perf_counter()


def run_load(url: str, users: Sequence[tuple[str, str]], dataset: str, seconds: float, *, seed: int = 0) -> LoadReport:
    """Every user logs in, then all label at once for ``seconds`` (calls in flight at the end complete).

    The clock starts once every annotator has logged in (logins are timed too, as ``login``).
    """
    annotators = [Annotator(name) for name, _ in users]
    clients = [AppClient(url, name, pw) for name, pw in users]
    clock: dict[str, float] = {"seconds": seconds}

    def go() -> None:
        clock["start"] = time.perf_counter()

    ready = threading.Barrier(len(users), action=go)
    threads = [
        threading.Thread(target=_annotate, args=(c, a, dataset, random.Random(f"{seed}:{a.name}"), ready, clock),
                         name=f"annotator-{a.name}", daemon=True)
        for c, a in zip(clients, annotators, strict=True)
    ]  # fmt: skip
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for c in clients:
        c.close()
    start = clock.get("start")
    end = max((clock.get(a.name, 0.0) for a in annotators), default=0.0)
    if start is None:
        return LoadReport(annotators, 0.0)
    return LoadReport(annotators, end - start, start)


# --- a database and an app to run against ---------------------------------------------------------


def user_names(n: int) -> list[tuple[str, str]]:
    return [(f"annotator{k:02d}", f"pw-annotator{k:02d}-secret") for k in range(1, n + 1)]


def prepare_database(db_url: str, n_items: int, users: Sequence[tuple[str, str]], name: str = DATASET) -> None:
    """A data set of ``n_items`` pairs (LLMBar Natural texts, each query made unique) and the accounts."""
    from rrm_ui.config import Settings
    from rrm_ui.domain import ImportedDataset, ImportedItem
    from rrm_ui.services import accounts, open_repository

    rows = json.loads(LLMBAR.read_text())
    items = tuple(
        ImportedItem(f"load-{k}", f"[{k}] {r['input']}", (r["output_1"], r["output_2"]), k + 1)
        for k, r in ((k, rows[k % len(rows)]) for k in range(n_items))
    )
    repo = open_repository(Settings.from_env().but(database_url=db_url))
    repo.create_dataset(ImportedDataset(name, "bench/annotators.py", "generated", items))
    for user, password in users:
        accounts.add_user(repo, user, password)
    repo.engine.dispose()


def stored_labels(db_path: Path) -> list[tuple[str, str | None, int, str]]:
    """(annotator, note, item id, choice) of every label in a SQLite database."""
    with sqlite3.connect(db_path) as conn:
        sql = "select a.name, l.note, l.item_id, l.choice from labels l join annotators a on a.id = l.annotator_id"
        return conn.execute(sql).fetchall()


@dataclass
class LocalApp:
    """``python app.py`` on a free port (the model cannot load: labelling needs none)."""

    proc: subprocess.Popen
    url: str
    log: Path


def start_app(tmp: Path, db_url: str, overlap: int, cpus: set[int] | None) -> LocalApp:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp / "app.log"
    command = [sys.executable, "app.py", "--db", db_url, "--port", str(port), "--overlap", str(overlap),
               "--model", str(tmp / "no-such-model"), "--backend", "transformers"]  # fmt: skip
    if cpus:
        command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while "serving on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the app did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return LocalApp(proc, f"http://127.0.0.1:{port}", log)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_app(app: LocalApp) -> None:
    app.proc.terminate()
    try:
        app.proc.wait(30)
    except subprocess.TimeoutExpired:
        app.proc.kill()


@dataclass(frozen=True)
class Check:
    stored: int
    missing: int
    extra: int
    duplicates: int
    wrong_choice: int  # stored with another choice than the one sent
    items_over_overlap: int  # items labelled by more annotators than the overlap allows


def check(report: LoadReport, db_path: Path, overlap: int = 1) -> Check:
    """Compare what the client believes it stored with the labels table (and count overfull items)."""
    from collections import Counter

    rows = stored_labels(db_path)
    stored = Counter((name, note) for name, note, _, _ in rows)
    client = Counter(report.submitted)
    sent = {(a.name, note): choice for a in report.annotators for note, choice in a.labels}
    by_item: dict[int, set[str]] = {}
    for name, _, item, _ in rows:
        by_item.setdefault(item, set()).add(name)
    return Check(
        stored=len(rows),
        missing=sum((client - stored).values()),
        extra=sum((stored - client).values()),
        duplicates=sum(n - 1 for n in stored.values() if n > 1),
        wrong_choice=sum(sent.get((name, note), choice) != choice for name, note, _, choice in rows),
        items_over_overlap=sum(len(names) > overlap for names in by_item.values()),
    )


def machine() -> str:
    import gradio

    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, gradio {gradio.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, httpx {httpx.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--items", type=int, default=10_000, help="pairs in the data set (enough not to run out)")
    ap.add_argument("--overlap", type=int, default=1, help="the app's --overlap (annotators per item)")
    ap.add_argument("--no-pin", action="store_true", help="do not put the app on CPU 0 and this driver on the rest")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (database, app log)")
    args = ap.parse_args(argv)

    from rrm_ui.ui.tabs.annotate import NO_RUN as APP_NO_RUN

    assert APP_NO_RUN == NO_RUN, "rrm_ui.ui.tabs.annotate.NO_RUN changed: update bench/annotators.py"
    tmp = Path(tempfile.mkdtemp(prefix="rrm-ui-annotators-"))
    db = tmp / "load.db"
    users = user_names(args.annotators)
    t = time.perf_counter()
    prepare_database(f"sqlite:///{db}", args.items, users)
    print(f"database: {args.items} pairs, {len(users)} accounts ({time.perf_counter() - t:.1f} s)", flush=True)
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2 and shutil.which("taskset") is not None
    app = start_app(tmp, f"sqlite:///{db}", args.overlap, {cpus[0]} if pin else None)
    before = os.sched_getaffinity(0)
    try:
        if pin:
            os.sched_setaffinity(0, set(cpus[1:]))  # the annotator threads started below inherit it
        cpu0, app0 = time.process_time(), cpu_seconds(app.proc.pid)
        report = run_load(app.url, users, DATASET, args.seconds)
        driver_cpu, app_cpu = time.process_time() - cpu0, cpu_seconds(app.proc.pid) - app0
    finally:
        os.sched_setaffinity(0, before)
        stop_app(app)
    result = check(report, db, args.overlap)
    calls = sum(len(report.times(k)) for k in report.kinds())
    print(report.summary())
    print()
    print(
        f"database check: {result.stored} labels stored, {result.missing} missing, {result.extra} extra, "
        f"{result.duplicates} duplicates, {result.wrong_choice} with another choice, "
        f"{result.items_over_overlap} items labelled by more than {args.overlap} annotator(s) (the overlap)"
    )
    print(f"driver CPU: {driver_cpu:.1f} s for {calls} calls ({1000 * driver_cpu / max(calls, 1):.2f} ms per call)")
    print(
        f"app CPU: {app_cpu:.1f} s over {report.seconds:.1f} s of load ({app_cpu / max(report.seconds, 1e-9):.2f} "
        f"cores; {1000 * app_cpu / max(len(report.submitted), 1):.1f} ms per label, logins included)"
    )
    print(f"placement: {'app on CPU ' + str(cpus[0]) + ', driver on the rest' if pin else 'shared CPUs'}")
    print(f"machine: {machine()}")
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = result.missing or result.extra or result.duplicates or result.wrong_choice or result.items_over_overlap
    bad = bad or report.errors
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
