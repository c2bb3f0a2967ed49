"""What the compute controls cost and buy, with the demo judge on CPU (docs/benchmarks.md, "Compute controls").

Judges LLMBar Natural pairs through ``rrm-ui judge`` (the transformers backend, one process per run, as a
user would) and prints, per run: wall time, samples, completion tokens per item and per verdict, truncated
and forced closes, agreement with gold; then the adaptive runs against the fixed one (the report's
``adaptive_audit``) and budget forcing against cutting off at the same thinking budget.

    .venv/bin/python -m bench.compute [--items 40] [--model DIR]

The demo judge (``rrm-ui dev demo-judge``) is built into ``db/demo-judge`` when ``--model`` is not given.
Its verdicts are content-blind by design (a position bias and a share of long traces, documented in its
README), so agreement with gold sits near chance: the figures here are what the controls spend, not what
a real judge gains from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import LLMBAR, ROOT, machine


def _cli(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "rrm_ui", *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"rrm-ui {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--model", help="the demo judge (default: db/demo-judge, built if missing)")
    ap.add_argument("--runs", help="only these runs, comma-separated (default: all; fixed-4 is the audit's "
                                   "reference)")  # fmt: skip
    args = ap.parse_args()
    model = Path(args.model) if args.model else ROOT / "db/demo-judge"
    if not (model / "demo-judge.json").exists():
        from rrm_ui.dev.demo_judge import build_demo_judge

        build_demo_judge(model)
    info = json.loads((model / "demo-judge.json").read_text())
    short, long = info["completion_tokens"]["short"], info["completion_tokens"]["long"]
    full, tight = long + 8, (short + long) // 2  # every trace fits / the long traces do not

    tmp = Path(tempfile.mkdtemp(prefix="bench-compute-"))
    data = tmp / "llmbar.json"
    data.write_text(json.dumps(json.loads(LLMBAR.read_text())[: args.items]))
    db = f"sqlite:///{tmp / 'rrm.db'}"
    _cli("import", str(data), "--db", db, "--preset", "llmbar", "--name", "llmbar", cwd=tmp)
    common = ["--dataset", "llmbar", "--db", db, "--backend", "transformers", "--model", str(model),
              "--temperature", "0.6", "--seed", "1", "--quiet"]  # fmt: skip
    runs = {
        "fixed-4": ["--max-tokens", str(full), "--votes", "4"],
        "adaptive-margin": ["--max-tokens", str(full), "--adaptive", "--budget", "4", "--margin", "2"],
        "adaptive-beta": ["--max-tokens", str(full), "--adaptive", "--budget", "4", "--stopping", "beta",
                          "--confidence", "0.9"],  # fmt: skip
        # adaptive at the tight budget, where a long trace is cut off: as it is, and escalating the thinking
        # budget of a pair still undecided (doubled each round, up to the full budget)
        "adaptive-tight": ["--max-tokens", str(tight), "--adaptive", "--budget", "4", "--margin", "2"],
        "adaptive-escalate": ["--max-tokens", str(tight), "--adaptive", "--budget", "4", "--margin", "2",
                              "--escalate-to", str(full)],  # fmt: skip
        "cutoff": ["--max-tokens", str(tight), "--votes", "1", "--swap"],
        "force": ["--max-tokens", str(tight), "--votes", "1", "--swap", "--budget-mode", "force",
                  "--answer-budget", "16"],  # fmt: skip
    }
    if args.runs:
        wanted = args.runs.split(",")
        unknown = sorted(set(wanted) - set(runs))
        if unknown:
            raise SystemExit(f"no such run: {', '.join(unknown)} (runs: {', '.join(runs)})")
        runs = {name: flags for name, flags in runs.items() if name in wanted}
    wall = {}
    for name, flags in runs.items():
        t0 = time.perf_counter()
        _cli("judge", *common, "--run", name, *flags, cwd=tmp)
        wall[name] = time.perf_counter() - t0
    report = json.loads(_cli("report", "--db", db, "--dataset", "llmbar", "--reference", "gold", "--format",
                             "json", cwd=tmp))  # fmt: skip

    gold = {r["run"]: r for r in report["by_reference"] if r["reference"] == "gold"}
    print(f"# demo judge on {machine()}; {args.items} LLMBar Natural pairs; thinking budgets: full {full} "
          f"tokens, tight {tight} (short traces {short}, long {long} tokens)")  # fmt: skip
    print(f"{'run':<17} {'wall s':>7} {'samples':>7} {'tok/item':>9} {'tok/verdict':>11} {'trunc':>5} "
          f"{'forced':>6} {'gold agr':>8}")  # fmt: skip
    for t in report["compute"]:
        name = t["run"]
        ok = t["judgments"] - t["no_verdict"]
        agree = (gold.get(name) or {}).get("agreement", {}).get("value")
        print(f"{name:<17} {wall[name]:>7.1f} {t['judgments']:>7} {t['tokens_per_item']:>9.1f} "
              f"{t['completion_tokens'] / max(ok, 1):>11.1f} {t['truncated']:>5} {t['forced']:>6} "
              f"{'' if agree is None else f'{agree:.3f}':>8}")  # fmt: skip
    for a in report["adaptive_audit"]:
        print(f"{a['run']} vs {a['reference_run']}: tokens saved {a['tokens_saved']:.1%}, same choice "
              f"{a['same_choice']:.1%}, agreement lost {a['agreement_lost']:+.3f}")  # fmt: skip
    c = {t["run"]: t for t in report["compute"]}
    if {"adaptive-tight", "adaptive-escalate"} <= set(c):
        import sqlite3

        with sqlite3.connect(tmp / "rrm.db") as con:  # pairs with a winner, and the escalated judgments
            decided = dict(con.execute(
                "SELECT r.name, count(*) FROM item_results x JOIN runs r ON r.id = x.run_id "
                "WHERE x.winner IS NOT NULL GROUP BY r.name").fetchall())  # fmt: skip
            raised = con.execute(
                "SELECT count(*), coalesce(sum(j.status = 'ok'), 0) FROM judgments j JOIN runs r ON r.id = j.run_id "
                "WHERE r.name = 'adaptive-escalate' AND j.escalated_to IS NOT NULL").fetchone()  # fmt: skip
        t, e = c["adaptive-tight"], c["adaptive-escalate"]
        won = (decided.get("adaptive-escalate", 0), decided.get("adaptive-tight", 0))
        print(f"escalation at {tight} tokens (up to {full}): pairs with a winner {won[0]} vs {won[1]} of "
              f"{args.items}; truncated {e['truncated']} vs {t['truncated']}; samples {e['judgments']} vs "
              f"{t['judgments']}; tokens/item {e['tokens_per_item']:.1f} vs {t['tokens_per_item']:.1f}; "
              f"{raised[0]} judgments escalated, {raised[1]} of them with a verdict")  # fmt: skip
    if not {"cutoff", "force"} <= set(c):
        return
    verdicts = {n: c[n]["judgments"] - c[n]["no_verdict"] for n in ("cutoff", "force")}
    extra = c["force"]["completion_tokens"] - c["cutoff"]["completion_tokens"]
    print(f"force vs cutoff at {tight} tokens: verdicts {verdicts['force']} vs {verdicts['cutoff']} of "
          f"{c['force']['judgments']}; completion tokens +{extra} ({extra / c['cutoff']['completion_tokens']:+.1%}); "
          f"wall {wall['force']:.1f} s vs {wall['cutoff']:.1f} s")  # fmt: skip
    import sqlite3

    with sqlite3.connect(tmp / "rrm.db") as con:  # each forced judgment's own cost: the answer after the close
        n, answer, before = con.execute(
            "SELECT count(*), avg(j.completion_tokens - j.forced_at), avg(j.forced_at) FROM judgments j "
            "JOIN runs r ON r.id = j.run_id WHERE r.name = 'force' AND j.forced_close"
        ).fetchone()
    if n:
        print(f"forced closes: {n}, {answer:.1f} answer tokens each after {before:.0f} thinking tokens "
              f"(+{answer / before:.0%} on those judgments)")  # fmt: skip


if __name__ == "__main__":
    main()
