"""How the Judge tab holds up with eight comparisons streaming at once, measured in Chromium.

Starts ``python app.py`` on the tiny model (in-process vLLM), judges one pair with 4 votes in both
orders (8 streams) and a large thinking budget, and records in the page:
- updates of the panels per second (the server batches them: at most 4 per second),
- the longest gap between animation frames while streaming (a page that stutters shows long gaps),
- round trips of a trivial script call while streaming (how quickly the page answers input),
- that every panel's final text is the stored judgment's complete reasoning.

    .venv/bin/python bench/ui_streaming.py [--budget 8000] [--model DIR]

Needs Debian's chromium and the playwright package (scripts/test.sh installs both).
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import ensure_tiny_model, machine  # noqa: E402

PROBE = """() => {
  window.__gaps = []; window.__updates = 0;
  let last = performance.now();
  const frame = (t) => {
    window.__gaps.push(t - last); last = t;
    if (!window.__stopFrames) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  new MutationObserver(() => { window.__updates += 1; })
    .observe(document.querySelector('#judge-panels'), {childList: true, subtree: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "2"}


def pinned(command: list[str], pin: bool) -> list[str]:
    """With ``pin``: the command (app and model) on CPU 0, this process and the Chromium it starts on CPU 1."""
    if not pin:
        return command
    os.sched_setaffinity(0, {1})
    return ["taskset", "-c", "0", *command]


def stop_app(app: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL if the app has not shut down in time (a loaded machine slows vLLM's teardown)."""
    app.terminate()
    try:
        app.wait(timeout_s)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait()


def launch_chromium(p):  # noqa: ANN001, ANN201 - playwright's sync API
    return p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless", "--disable-gpu"])


def open_when_ready(browser, port: int, timeout_s: float = 300):  # noqa: ANN001, ANN201
    """A page on the app once the server answers and the banner says the model is ready."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            page.goto(f"http://127.0.0.1:{port}")
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    page.wait_for_selector("#model-banner:has-text('Model ready')", timeout=timeout_s * 1000)
    return page


def fill_pair(page, budget: int, votes: int = 4) -> None:  # noqa: ANN001
    """The Judge form: one pair, ``votes`` votes per order, both orders (2 x votes streams)."""
    page.fill("#judge-query textarea", "Which answer explains recursion better?")
    page.fill("#judge-response-1 textarea", "A function that calls itself on a smaller input.")
    page.fill("#judge-response-2 textarea", "Recursion is when you loop.")
    for sel, value in (("#judge-budget", budget), ("#judge-votes", votes)):
        box = page.locator(f"{sel} input[type=number]")
        box.fill(str(value))
        box.press("Enter")
    page.check("#judge-swap input")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=8000)
    ap.add_argument("--model", help="model directory (default: ./tiny-model, built if missing)")
    ap.add_argument("--pin", action="store_true",
                    help="app and model on CPU 0, the browser on CPU 1 (on a CPU-only machine the model's "
                         "busy threads otherwise starve the browser)")  # fmt: skip
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="rrm-ui-bench-"))
    model = ensure_tiny_model(args.model)
    port = free_port()
    db = tmp / "bench.db"
    log = (tmp / "app.log").open("w")
    command = [sys.executable, "app.py", "--model", model, "--db", f"sqlite:///{db}", "--port", str(port),
               "--max-tokens", str(args.budget)]  # fmt: skip
    command = pinned(command, args.pin)
    app = subprocess.Popen(command, cwd=ROOT, env=app_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = open_when_ready(browser, port)
            fill_pair(page, args.budget)
            page.evaluate(PROBE)
            started = time.monotonic()
            page.click("#judge-go")
            page.wait_for_selector(".rrm-stream[data-done='0']", timeout=120_000)
            first = time.monotonic() - started
            rtts = []
            while page.locator(".rrm-verdict").count() == 0:
                t = time.perf_counter()
                page.evaluate("1")
                rtts.append((time.perf_counter() - t) * 1000)
                time.sleep(0.1)
            total = time.monotonic() - started
            page.evaluate("window.__stopFrames = true")
            gaps = page.evaluate("window.__gaps")
            updates = page.evaluate("window.__updates")
            panels = page.locator(".rrm-stream").count()
            shown = page.evaluate("[...document.querySelectorAll('.rrm-stream .rrm-pre')].map(e => e.textContent)")
            browser.close()
        with sqlite3.connect(db) as conn:
            stored = [r[0] for r in conn.execute("select reasoning from judgments")]
            tokens = sum(r[0] or 0 for r in conn.execute("select completion_tokens from judgments"))

        # HTML parsing turns CR and CRLF into LF and drops NUL from text (in body text a NUL is ignored, not
        # replaced); compare the text as a browser holds it
        def as_html(text: str) -> str:
            return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")

        complete = sum(1 for text in stored if any(as_html(text) == s for s in shown))
        # the random model's invalid byte pieces: compare once more without replacement characters
        bare = [s.replace("\ufffd", "") for s in shown]
        nearly = sum(1 for text in stored if as_html(text).replace("\ufffd", "") in bare)
        if os.environ.get("BENCH_DUMP"):
            import json

            Path(os.environ["BENCH_DUMP"]).write_text(json.dumps({"stored": stored, "shown": shown}))
        print(f"machine: {machine()}{'; app on CPU 0, browser on CPU 1' if args.pin else ''}")
        print(f"streams: {panels} panels, {tokens:,} tokens in {total:.1f} s (first text after {first:.2f} s)")
        print(f"panel updates seen by the page: {updates} DOM mutation batches over {total:.1f} s")
        print(f"animation frame gap while streaming: median {statistics.median(gaps):.1f} ms, "
              f"p99 {sorted(gaps)[int(len(gaps) * 0.99)]:.1f} ms, max {max(gaps):.1f} ms")  # fmt: skip
        print(f"script round trip while streaming: median {statistics.median(rtts):.1f} ms, "
              f"p95 {sorted(rtts)[int(len(rtts) * 0.95)]:.1f} ms over {len(rtts)} probes")  # fmt: skip
        print(f"final text complete: {complete} of {len(stored)} stored judgments found whole in their panels, "
              f"{nearly} of {len(stored)} when U+FFFD replacement characters are ignored")  # fmt: skip
    finally:
        stop_app(app)


if __name__ == "__main__":
    main()
