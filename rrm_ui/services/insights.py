"""Dashboards and the failure-case explorer: what the Dashboards and Explorer tabs call.

:class:`Insights` keeps the derived frames of the whole database in memory and rebuilds them
only when :meth:`~rrm_ui.storage.repo_analytics.AnalyticsStore.data_version` changes (one
cheap query per request), so a dashboard or an explorer query is pandas over cached frames.

A dashboard is computed for a :class:`Scope` (data set, runs, reference). Every chart point
carries a :class:`~rrm_ui.analysis.explorer.Drill` (the explorer filter that lists the rows behind
it); the filter engine is :mod:`rrm_ui.analysis.explorer`, this service caches its rows and adds the
free-text search, which reads the database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from rrm_ui.analysis import compute as comp
from rrm_ui.analysis import disagreement as dis
from rrm_ui.analysis.explorer import FLAGS, SORTS, Drill, explorer_rows, matches, sort
from rrm_ui.analysis.frames import GOLD, MAJORITY, NO_MAJORITY, Frames, build, majority, update
from rrm_ui.analysis.metrics import Estimate, wilson
from rrm_ui.analysis.references import HUMANS, reference_names, select_reference
from rrm_ui.domain import Item
from rrm_ui.storage import Repository
from rrm_ui.storage.repo_analytics import AnalyticsFrames

EXPLORER_LIMIT = 500
DASHBOARDS_KEPT = 32  # scopes x groupings whose dashboards are kept


@dataclass(frozen=True)
class Scope:
    """What a dashboard covers: a data set (None: all), some runs (empty: all), the reference.

    ``reference`` is ``humans`` (every annotator's latest label), ``majority`` (the human majority per
    comparison), ``gold``, or one annotator's name.
    """

    dataset: str | None = None
    runs: tuple[str, ...] = ()
    reference: str = HUMANS


class Dashboard:
    """Every dashboard table for one scope and grouping, each computed the first time it is read.

    A folded section of the Dashboards tab costs nothing until it is opened, and a table whose
    inputs did not change since the previous database version is taken from the dashboard of that
    version (``previous``): after a label, the judgments' and compute tables are not computed
    again; after a judgment, the annotators' tables are not. The inputs are compared by identity:
    :func:`~rrm_ui.analysis.frames.update` keeps a frame whose rows did not change, and
    :meth:`Insights.dashboard` narrows it to the scope once.

    The attributes (``headline``, ``by_reference``, ``tokens`` ...) are listed in :data:`PARTS`.
    """

    def __init__(self, scope: Scope, group_by: str, frames: Frames, previous: Dashboard | None = None,
                 version: tuple[int, ...] | None = None) -> None:  # fmt: skip
        self.scope = scope
        self.group_by = group_by
        self.version = version  # the database version of the frames
        self._frames = frames
        self._values: dict[str, tuple[tuple[Any, ...], Any]] = {}
        # the older versions' values not replaced yet (one per part: a part that was never read here is
        # still reused from an older version if its inputs are those of then)
        self._previous = {**previous._previous, **previous._values} if previous is not None else {}
        self._lock = threading.RLock()
        self._reads: dict[str, Any] | None = None  # the parts read inside tracked()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in _PARTS:
            raise AttributeError(name)
        return self.part(name)

    def part(self, name: str) -> Any:
        """The value of one part, computed (or reused) on first use."""
        with self._lock:
            hit = self._values.get(name)
            if hit is not None:
                self._read(name, hit[1])
                return hit[1]
            deps, fn = _PARTS[name]
            inputs = tuple(self._input(d) for d in deps)
            old = self._previous.get(name)
            if old is not None and len(old[0]) == len(inputs) and all(a is b for a, b in zip(old[0], inputs,
                                                                                        strict=True)):
                value = old[1]
            else:
                value = fn(self, *inputs)
            self._values[name] = (inputs, value)
            self._previous.pop(name, None)
            self._read(name, value)
            return value

    def _read(self, name: str, value: Any) -> None:
        if self._reads is not None and not name.startswith("_"):  # the tables, not the large intermediate frames
            self._reads[name] = value

    def tracked(self, fn: Any) -> tuple[Any, dict[str, Any]]:
        """``fn()`` and the parts it read (name -> value): what a chart built from this dashboard depends on."""
        with self._lock:
            outer, self._reads = self._reads, {}
            try:
                value = fn()
            finally:
                reads, self._reads = self._reads, outer
            if outer is not None:
                outer.update(reads)
            return value, reads

    def unchanged(self, reads: dict[str, Any]) -> bool:
        """Whether every part in ``reads`` (from :meth:`tracked` on another version's dashboard) is the same
        object here: a chart built from them then need not be built again."""
        return all(self.part(name) is value for name, value in reads.items())

    def _input(self, dep: str) -> Any:
        if dep.startswith("f."):
            return getattr(self._frames, dep[2:])
        return self.part(dep)

    def compute_all(self) -> Dashboard:
        for name in _PARTS:
            self.part(name)
        return self


def _counts(d: Dashboard, items: pd.DataFrame, results: pd.DataFrame, judgments: pd.DataFrame, labels: pd.DataFrame,
            refs: pd.DataFrame, comparisons: pd.DataFrame) -> dict[str, int]:  # fmt: skip
    return {
        "items": int(items["item_id"].nunique()),
        "runs": int(results["run"].nunique()),
        "judgments": len(judgments),
        "labels": len(labels),
        "annotators": int(labels["annotator"].nunique()),
        "references": len(refs),
        "decisive": int(refs["decisive"].sum()),
        "not_compared": int((~refs["compared"]).sum()),  # on a pair of a list the run never compared
        "three_way": int(refs["three_way"].sum()),
        "labelled_comparisons": len(comparisons),
        "no_majority": int((comparisons["choice"] == NO_MAJORITY).sum()),
    }


#: name -> (inputs, function of the dashboard and the inputs): ``f.X`` is the scoped frame X, any
#: other input another part. Parts without a leading underscore are the dashboard's tables.
_PARTS: dict[str, tuple[tuple[str, ...], Any]] = {
    # intermediate values
    "_refs": (("f.refs",), lambda d, refs: select_reference(refs, d.scope.reference)),
    "_gold": (("f.refs",), lambda d, refs: refs[refs["reference"] == GOLD]),
    "_both": (("f.results",), lambda d, r: r[r["position_consistent"].notna()]),
    "_votes": (("f.judgments",), lambda d, j: j[~j["retried"]]),  # the samples' last tries: the ones that vote
    "_comparisons": (("f.labels",), lambda d, labels: majority(labels)),
    "_annotators": (("f.labels",), lambda d, labels: sorted(labels["annotator"].dropna().unique().tolist())),
    # the tables
    "headline": (("_refs",), lambda d, refs: dis.headline(refs)),
    "three_way": (("_refs",), lambda d, refs: dis.three_way(refs)),
    "by_reference": (("f.refs", "_annotators"), lambda d, refs, names: dis.by_reference(refs, reference_names(names))),
    "judges": (("f.results",), lambda d, r: dis.judge_vs_judge(r)),
    "alpha": (("f.labels",), lambda d, labels: dis.annotator_alpha(labels)),
    "flip": (("_both",), lambda d, both: wilson(int(both["inconsistent"].sum()), len(both))),
    "counts": (("f.items", "f.results", "f.judgments", "f.labels", "_refs", "_comparisons"), _counts),
    "by_group": (("_refs",), lambda d, refs: {"overall": dis.model_vs_reference(refs, None),
                                              d.group_by: dis.model_vs_reference(refs, dis.GROUPS[d.group_by])}),
    "gold_by_run": (("_gold",), lambda d, gold: dis.model_vs_reference(gold, "run")),
    "confusion": (("_refs", "_gold"), lambda d, refs, gold: dis.confusion_matrix(refs if d.scope.reference != GOLD
                                                                                 else gold)),
    "annotator_pairs": (("f.labels",), lambda d, labels: dis.annotator_pairs(labels)),
    "flips": (("f.results",), lambda d, r: dis.flip_rate(r, "run")),
    "splits": (("f.results",), lambda d, r: dis.vote_splits(r)),
    "by_margin": (("_refs",), lambda d, refs: dis.agreement_by_margin(refs)),
    "_runs_judged": (("f.results", "f.judgments", "totals"),
                     lambda d, r, j, t: dis.runs_judged(r, j, t) if len(r) else None),  # fmt: skip
    "runs": (("f.results", "f.refs", "f.judgments", "_runs_judged"),
             lambda d, r, refs, j, judged: dis.runs_side_by_side(r, refs, j, judged)),
    "tokens": (("f.judgments",), lambda d, j: comp.token_histogram(j)),
    "tokens_by_subset": (("f.judgments",), lambda d, j: comp.distribution(j, "reasoning_tokens", "subset")),
    "tokens_by_status": (("f.judgments",), lambda d, j: comp.distribution(j, "reasoning_tokens", "status")),
    "ttft": (("f.judgments",), lambda d, j: comp.distribution(j, "ttft_s", "backend")),
    "latency": (("f.judgments",), lambda d, j: comp.distribution(j, "latency_s", "backend")),
    "throughput": (("f.judgments",), lambda d, j: comp.distribution(j, "tokens_per_s", "backend")),
    "totals": (("f.judgments", "f.results"), lambda d, j, r: comp.run_totals(j, r)),
    "by_length": (("_votes", "_refs"), lambda d, votes, refs: comp.accuracy_by_length(votes, refs)),
    "by_votes": (("_votes", "_refs"), lambda d, votes, refs: comp.accuracy_by_votes(votes, refs)),
    "fixed_vs_adaptive": (("runs",), lambda d, side: comp.compute_vs_accuracy(side)),
    "adaptive_audit": (("f.runs", "f.results", "f.judgments", "_refs", "_gold"),
                       lambda d, runs, r, j, refs, gold: comp.adaptive_audit(
                           runs, r, j, refs, gold if d.scope.reference == HUMANS else None, d.scope.reference)),
}
PARTS = tuple(name for name in _PARTS if not name.startswith("_"))


@dataclass
class Insights:
    repo: Repository
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _version: tuple[int, ...] | None = None
    _frames: Frames | None = None
    _raw: AnalyticsFrames | None = None
    _dashboards: dict[tuple[Scope, str], Dashboard] = field(default_factory=dict)
    _narrowed: dict[tuple[str, str | None, tuple[str, ...]], tuple[pd.DataFrame, pd.DataFrame]] = field(
        default_factory=dict)  # fmt: skip
    _rows: tuple[Frames, pd.DataFrame] | None = None

    # --- the cache -------------------------------------------------------------------------

    def frames(self) -> Frames:
        """The derived frames of the whole database; after a write only the rows not read yet are read.

        The version kept is that of the snapshot the frames were read in (a write between the
        version query and the read is seen by the next request)."""
        version = self.repo.data_version()
        with self._lock:
            if self._frames is None or version != self._version:
                self._raw = self.repo.analytics_frames(since=self._raw)
                # the pieces whose rows did not change are kept (frames.update)
                self._frames = build(self._raw) if self._frames is None else update(self._frames, self._raw)
                self._version = self._raw.version
            return self._frames

    def choices(self) -> dict[str, list[str]]:
        """What the scope and filter menus offer: data sets, runs, subsets, annotators, references."""
        f = self.frames()
        annotators = sorted(f.labels["annotator"].dropna().unique().tolist())
        return {
            "datasets": sorted(f.items["dataset"].unique().tolist()),
            "runs": sorted(f.runs["run"].unique().tolist()),
            "subsets": sorted(f.items["subset"].unique().tolist()),
            "annotators": annotators,
            "references": reference_names(annotators),
        }

    # --- dashboards ------------------------------------------------------------------------

    def dashboard(self, scope: Scope, group_by: str = "run") -> Dashboard:
        """The dashboard of ``scope``; agreement is broken down overall and by ``group_by`` (one of
        ``disagreement.GROUPS``). One per database version; its tables are computed when first read
        (and reused from the previous version's where their inputs did not change)."""
        if group_by not in dis.GROUPS:
            raise ValueError(f"unknown grouping {group_by!r}; choose from {', '.join(dis.GROUPS)}")
        frames = self.frames()
        key = (scope, group_by)
        with self._lock:
            d = self._dashboards.get(key)
            if d is not None and d.version == self._version:
                return d
            new = Dashboard(scope, group_by, self._scoped(frames, scope), previous=d, version=self._version)
            self._dashboards[key] = new
            while len(self._dashboards) > DASHBOARDS_KEPT:
                self._dashboards.pop(next(iter(self._dashboards)))
            return new

    def _scoped(self, f: Frames, scope: Scope) -> Frames:
        """``f`` narrowed to ``scope``; a frame that did not change since the last call is narrowed once
        (the same object comes back, so the tables that read only it are reused)."""
        out = {}
        for name, by_run in (("results", True), ("refs", True), ("judgments", True), ("labels", False),
                             ("items", False)):  # fmt: skip
            source = getattr(f, name)
            key = (name, scope.dataset, scope.runs if by_run else ())
            hit = self._narrowed.get(key)
            if hit is None or hit[0] is not source:
                hit = (source, _narrow(source, scope, by_run))
                self._narrowed[key] = hit
                while len(self._narrowed) > 5 * DASHBOARDS_KEPT:
                    self._narrowed.pop(next(iter(self._narrowed)))
            out[name] = hit[1]
        return replace(f, **out)

    # --- the explorer ----------------------------------------------------------------------

    def explore(self, drill: Drill, limit: int = EXPLORER_LIMIT) -> tuple[pd.DataFrame, int]:
        """The rows (one per run and item; items never judged get one row without a run) matching
        ``drill``, sorted, at most ``limit``; and how many matched in all."""
        f = self.frames()
        with self._lock:  # the rows are derived from the frames: built once per database version
            if self._rows is None or self._rows[0] is not f:
                self._rows = (f, explorer_rows(f))
            rows = self._rows[1]
        rows = rows[matches(rows, f, drill)]
        if drill.text.strip():
            found = self.repo.search_items(drill.text.strip(), None)
            rows = rows[rows["item_id"].isin(found)]
        rows = sort(rows, drill.sort)
        return rows.head(limit).reset_index(drop=True), len(rows)

    def item(self, item_db_id: int) -> ItemDetail | None:
        stored = self.repo.item(item_db_id)
        if stored is None:
            return None
        f = self.frames()
        results = f.results[f.results["item_id"] == item_db_id]
        return ItemDetail(
            item_db_id=item_db_id,
            dataset=str(f.items.loc[f.items["item_id"] == item_db_id, "dataset"].iat[0]),
            item=stored.item,
            subset=stored.subset,
            gold_tiers=stored.gold_tiers,
            results=results.reset_index(drop=True),
            judgments=self.repo.item_judgments(item_db_id),
            labels=self.repo.item_labels(item_db_id),
        )


@dataclass(frozen=True)
class ItemDetail:
    item_db_id: int
    dataset: str
    item: Item
    subset: str | None
    gold_tiers: tuple[int, ...] | None
    results: pd.DataFrame  # one row per run (the explorer's columns)
    judgments: pd.DataFrame  # every sample of every run, text included
    labels: pd.DataFrame  # every label, history included


# --- helpers -------------------------------------------------------------------------------------


def _narrow(df: pd.DataFrame, scope: Scope, by_run: bool) -> pd.DataFrame:
    if not scope.dataset and not (scope.runs and by_run):
        return df
    keep = np.ones(len(df), dtype=bool)
    if scope.dataset:
        keep &= (df["dataset"] == scope.dataset).to_numpy()
    if scope.runs and by_run:
        keep &= df["run"].isin(scope.runs).to_numpy()
    return df[keep]


# --- the report: the dashboards' figures for scripts (``rrm-ui report``) -------------------------


def report(insights: Insights, scope: Scope) -> dict[str, Any]:
    """The figures of :meth:`Insights.dashboard` for ``scope`` as plain JSON values (the keys are
    documented in docs/dashboards.md). ``rrm-ui report`` prints it; the Dashboards tab shows the same
    :class:`Dashboard`."""
    d = insights.dashboard(scope, "run")
    return {
        "scope": {"dataset": scope.dataset, "runs": list(scope.runs), "reference": scope.reference},
        "counts": {k: int(v) for k, v in d.counts.items()},
        "headline": {
            "reference": scope.reference,
            "agreement": _estimate(d.headline["agreement"]),
            "kappa": _estimate(d.headline["kappa"]),
            "three_way_agreement": _estimate(d.three_way["agreement"]),
            "three_way_kappa": _estimate(d.three_way["kappa"]),
        },
        "by_reference": [
            {"reference": r["reference"], "run": r["run"], "references": r["references"],
             "not_compared": r["not_compared"], "no_majority": r["no_majority"], "decisive": r["decisive"],
             "agree": r["agree"], "agreement": _interval(r, "agreement", r["decisive"]),
             "kappa": _interval(r, "kappa", r["decisive"]), "three_way": r["three_way"], "agree3": r["agree3"],
             "three_way_agreement": _interval(r, "agreement3", r["three_way"]),
             "three_way_kappa": _interval(r, "kappa3", r["three_way"])}
            for r in _records(d.by_reference)
        ],  # fmt: skip
        "annotators": {
            "alpha": _estimate(d.alpha),
            "pairs": [{"rater_1": r["rater_1"], "rater_2": r["rater_2"], "n": r["n"],
                       "agreement": _interval(r, "agreement", r["n"]), "kappa": _interval(r, "kappa", r["n"])}
                      for r in _records(d.annotator_pairs)],  # fmt: skip
        },
        "judges": [
            {"run_1": r["run_1"], "run_2": r["run_2"], "n": r["n"], "agree": r["agree"],
             "agreement": _interval(r, "agreement", r["n"]), "kappa": _interval(r, "kappa", r["n"]),
             "both_decided": r["both_decided"], "agree_decided": r["agree_decided"]}
            for r in _records(d.judges)
        ],  # fmt: skip
        "flip_rate": {
            "overall": _estimate(d.flip),
            "by_run": [{"run": r["group"], "inconsistent": r["inconsistent"], "judged_both_orders":
                        r["judged_both_orders"], "rate": r["rate"]} for r in _records(d.flips)],  # fmt: skip
        },
        "vote_splits": [{"run": r["run"], "split": r["split"], "items": r["items"]} for r in _records(d.splits)],
        "runs": [{"run": r["run"], "kind": r["kind"], "compute": r["compute"], "items": r["items"],
                  "agreement_humans": r["agreement_humans"], "agreement_gold": r["agreement_gold"],
                  "paper_score_gold": r["paper_score_gold"]} for r in _records(d.runs)],  # fmt: skip
        "compute": [
            {k: r.get(k) for k in ("run", "backend", "compute", "items", "judgments", "prompt_tokens",
                                   "completion_tokens", "reasoning_tokens", "generation_s", "truncated", "forced",
                                   "no_verdict", "truncation_rate", "tokens_per_item")}
            for r in _records(d.totals)
        ],  # fmt: skip
        "adaptive_audit": _records(d.adaptive_audit),
    }


def _plain(v: Any) -> Any:
    """A JSON value: numpy scalars as Python numbers, nan / NA as None."""
    if v is None or v is pd.NA or (isinstance(v, float | np.floating) and np.isnan(v)):
        return None
    if isinstance(v, np.integer | np.bool_):
        return v.item()
    if isinstance(v, np.floating):
        return float(v)
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _estimate(e: Estimate) -> dict[str, Any]:
    return {"value": _plain(e.value), "low": _plain(e.low), "high": _plain(e.high), "n": int(e.n)}


def _interval(r: dict[str, Any], name: str, n: Any) -> dict[str, Any]:
    return {"value": r.get(name), "low": r.get(f"{name}_low"), "high": r.get(f"{name}_high"), "n": int(n or 0)}


__all__ = ["FLAGS", "GOLD", "HUMANS", "MAJORITY", "SORTS", "Dashboard", "Drill", "Insights", "ItemDetail", "Scope",
           "report"]  # fmt: skip
