"""``rrm-ui report``: the dashboards' figures for notebooks, papers and CI, as JSON or Markdown.

The figures come from :func:`rrm_ui.services.insights.report`, the same computation the
Dashboards tab shows (:meth:`~rrm_ui.services.insights.Insights.dashboard`). The JSON keys are
documented in docs/dashboards.md. Nothing here imports gradio, plotly or a model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from rrm_ui.config import Settings

EPILOG = """\
examples:
  rrm-ui report --dataset llmbar --format json > figures.json
  rrm-ui report --dataset llmbar --run rrm-32b --run other-judge --reference majority --format markdown

--reference: humans (every annotator's latest label, the default), majority (the human majority per
comparison), gold, adjudicated (a reviewer's final label per comparison), or one annotator's name.
The headline is against it; "by_reference" lists every reference anyway. The JSON keys are described
in docs/dashboards.md ("rrm-ui report")."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="print a data set's dashboard figures (agreement, kappa, alpha, judge vs judge, flips, compute)",
        description="Print the figures of the Dashboards tab for one data set: counts, agreement and kappa "
        "with 95% intervals by reference and run, three-way agreement, inter-annotator kappa and "
        "Krippendorff's alpha, judge vs judge, flip rate, vote splits and compute totals.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="the stored data set's name")
    p.add_argument("--run", action="append", default=[], help="a run to cover (repeat it; default: every run)")
    p.add_argument("--reference", default="humans", help="humans | majority | gold | ANNOTATOR (default: humans)")
    p.add_argument("--format", choices=("json", "markdown"), default="json", help="output format (default: json)")
    p.add_argument("--db", help="database URL (default: RRM_UI_DATABASE_URL, else sqlite:///db/rrm_ui.db)")
    p.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    from rrm_ui.services import open_repository
    from rrm_ui.services.insights import Insights, Scope, report

    repo = open_repository(Settings.from_env().but(database_url=args.db))
    try:
        scope = check_scope(repo, args.dataset, tuple(args.run), args.reference)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    figures = report(Insights(repo), Scope(dataset=scope[0], runs=scope[1], reference=scope[2]))
    if args.format == "json":
        print(json.dumps(figures, indent=2, allow_nan=False))
    else:
        print(markdown(figures))
    return 0


def check_scope(repo: Any, dataset: str, runs: tuple[str, ...], reference: str) -> tuple[str, tuple[str, ...], str]:
    """The scope, or a ValueError that names what is missing and what exists."""
    info = repo.dataset(dataset)
    if info is None:
        names = ", ".join(d.name for d in repo.datasets()) or "none"
        raise ValueError(f"--dataset: no data set named {dataset!r} (stored: {names})")
    stored = [r.name for r in repo.runs(info.id)]
    missing = [r for r in runs if r not in stored]
    if missing:
        raise ValueError(f"--run: data set {dataset!r} has no run named {', '.join(map(repr, missing))} "
                         f"(its runs: {', '.join(stored) or 'none'})")  # fmt: skip
    if reference not in ("humans", "majority", "gold"):
        annotators = sorted({label.annotator for _id, _at, label in repo.labels_of(dataset_id=info.id)})
        if reference not in annotators:
            raise ValueError(f"--reference: {reference!r} is not humans, majority, gold or an annotator of "
                             f"{dataset!r} (its annotators: {', '.join(annotators) or 'none'})")  # fmt: skip
    return dataset, runs, reference


# --- Markdown -------------------------------------------------------------------------------------


def markdown(f: dict[str, Any]) -> str:
    """The report as Markdown: a heading per part, a table per list."""
    s, h, c = f["scope"], f["headline"], f["counts"]
    runs = ", ".join(s["runs"]) or "every run"
    out = [f"# Report: {s['dataset']} ({runs}; reference {s['reference']})", ""]
    out += ["## Counts", "", _table([{"count": k, "value": v} for k, v in c.items()]), ""]
    out += ["## Headline", "",
            f"- agreement with {h['reference']}: {_est(h['agreement'], pct=True)}",
            f"- Cohen's kappa: {_est(h['kappa'])}",
            f"- three-way agreement (A / B / tie): {_est(h['three_way_agreement'], pct=True)}",
            f"- three-way kappa: {_est(h['three_way_kappa'])}",
            f"- Krippendorff's alpha between annotators: {_est(f['annotators']['alpha'])}",
            f"- flip rate (verdict changes with the order): {_est(f['flip_rate']['overall'], pct=True)}",
            ""]  # fmt: skip
    by_ref = [{"reference": r["reference"], "run": r["run"], "decisive": r["decisive"],
               "agreement": _est(r["agreement"], pct=True), "kappa": _est(r["kappa"]), "A/B/tie": r["three_way"],
               "three-way agreement": _est(r["three_way_agreement"], pct=True),
               "three-way kappa": _est(r["three_way_kappa"]), "not compared": r["not_compared"],
               "no majority": r["no_majority"]} for r in f["by_reference"]]  # fmt: skip
    out += ["## Agreement by reference and run", "", _table(by_ref), ""]
    pairs = [{"annotator 1": p["rater_1"], "annotator 2": p["rater_2"], "items": p["n"],
              "agreement": _est(p["agreement"], pct=True), "kappa": _est(p["kappa"])}
             for p in f["annotators"]["pairs"]]  # fmt: skip
    out += ["## Between annotators", "", _table(pairs), ""]
    judges = [{"run 1": j["run_1"], "run 2": j["run_2"], "shared items": j["n"],
               "agreement": _est(j["agreement"], pct=True), "kappa": _est(j["kappa"]),
               "both decided": j["both_decided"], "agree when both decided": j["agree_decided"]}
              for j in f["judges"]]  # fmt: skip
    out += ["## Judge vs judge", "", _table(judges), ""]
    out += ["## Flip rate by run", "", _table(f["flip_rate"]["by_run"]), ""]
    out += ["## Vote splits", "", _table(f["vote_splits"]), ""]
    out += ["## Compute", "", _table(f["compute"]), ""]
    return "\n".join(out)


def _est(e: dict[str, Any], pct: bool = False) -> str:
    v, lo, hi, n = e["value"], e["low"], e["high"], e["n"]
    if v is None:
        return f"n/a (n={n})"
    if pct:
        head, bounds = f"{100 * v:.1f}%", None if lo is None else f"{100 * lo:.1f}, {100 * hi:.1f}"
    else:
        head, bounds = f"{v:.3f}", None if lo is None else f"{lo:.3f}, {hi:.3f}"
    return f"{head} [{bounds}] (n={n})" if bounds else f"{head} (n={n})"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k in cols) + " |" for r in rows]
    return "\n".join(lines)
