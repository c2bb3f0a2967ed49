"""Dashboards and the failure-case explorer: what the Dashboards and Explorer tabs call.

:class:`Insights` keeps the derived frames of the whole database in memory and rebuilds them
only when :meth:`~rrm_ui.storage.repo_analytics.AnalyticsStore.data_version` changes (one
cheap query per request), so a dashboard or an explorer query is pandas over cached frames.

A dashboard is computed for a :class:`Scope` (data set, runs, reference). Every chart point
carries a :class:`Drill` (the explorer filter that lists the rows behind it).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from rrm_ui.analysis import compute as comp
from rrm_ui.analysis import disagreement as dis
from rrm_ui.analysis.frames import GOLD, Frames, build
from rrm_ui.analysis.metrics import Estimate, wilson
from rrm_ui.domain import Item
from rrm_ui.storage import Repository
from rrm_ui.storage.repo_analytics import AnalyticsFrames

HUMANS = "humans"
FLAGS = {
    "disagree_human": "model disagrees with a human",
    "disagree_gold": "model disagrees with gold",
    "split_votes": "split votes",
    "inconsistent": "verdict flips with the order",
    "truncated": "a sample was truncated",
    "no_verdict": "model decided nothing",
    "labelled": "has human labels",
    "has_gold": "has a gold label",
    "unlabelled": "no human label",
}
SORTS = {
    "item": (["item_id", "run"], [True, True]),
    "most reasoning tokens": (["reasoning_tokens"], [False]),
    "slowest": (["latency_s"], [False]),
    "closest votes": (["margin"], [True]),
}
EXPLORER_LIMIT = 500


@dataclass(frozen=True)
class Scope:
    """What a dashboard covers: a data set (None: all), some runs (empty: all), the reference.

    ``reference`` is ``humans`` (every annotator's latest label), ``gold``, or one annotator's name.
    """

    dataset: str | None = None
    runs: tuple[str, ...] = ()
    reference: str = HUMANS


@dataclass(frozen=True)
class Drill:
    """An explorer filter; every field left at its default filters nothing."""

    dataset: str | None = None
    run: str | None = None
    subset: str | None = None
    annotator: str | None = None
    flags: tuple[str, ...] = ()
    text: str = ""
    reference: str | None = None  # with ref_choice/model_choice: humans, gold or an annotator
    ref_choice: str | None = None
    model_choice: str | None = None
    margin: int | None = None
    split: str | None = None
    bucket: str | None = None  # a reasoning-length bucket: rows with a sample in it
    status: str | None = None  # rows with a sample of this status
    backend: str | None = None
    sort: str = "item"

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v != _DEFAULTS[k]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Drill:
        known = {k: tuple(v) if k == "flags" else v for k, v in d.items() if k in _DEFAULTS}
        return cls(**known)

    def describe(self) -> str:
        parts = [f"{k} = {', '.join(v) if isinstance(v, list) else v}" for k, v in self.to_dict().items()
                 if k != "sort"]  # fmt: skip
        return "; ".join(parts) or "everything"


_DEFAULTS = {k: v for k, v in asdict(Drill()).items()}


@dataclass(frozen=True)
class Dashboard:
    scope: Scope
    headline: dict[str, Estimate]
    alpha: Estimate
    flip: Estimate
    counts: dict[str, int]
    by_group: dict[str, pd.DataFrame]  # model vs reference per grouping (overall, data set, ...)
    gold_by_run: pd.DataFrame
    confusion: pd.DataFrame
    annotator_pairs: pd.DataFrame
    flips: pd.DataFrame
    splits: pd.DataFrame
    by_margin: pd.DataFrame
    runs: pd.DataFrame
    tokens: pd.DataFrame
    tokens_by_subset: pd.DataFrame
    tokens_by_status: pd.DataFrame
    ttft: pd.DataFrame
    latency: pd.DataFrame
    throughput: pd.DataFrame
    totals: pd.DataFrame
    by_length: pd.DataFrame
    by_votes: pd.DataFrame
    fixed_vs_adaptive: pd.DataFrame


@dataclass
class Insights:
    repo: Repository
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _version: tuple[int, ...] | None = None
    _frames: Frames | None = None
    _raw: AnalyticsFrames | None = None
    _dashboards: dict[tuple[Scope, str], Dashboard] = field(default_factory=dict)
    _dash_version: tuple[int, ...] | None = None
    _rows: tuple[Frames, pd.DataFrame] | None = None

    # --- the cache -------------------------------------------------------------------------

    def frames(self) -> Frames:
        """The derived frames of the whole database; after a write only the new rows are read."""
        version = self.repo.data_version()
        with self._lock:
            if self._frames is None or version != self._version:
                self._raw = self.repo.analytics_frames(since=self._raw)
                self._frames = build(self._raw)
                self._version = version
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
            "references": [HUMANS, GOLD, *annotators],
        }

    # --- dashboards ------------------------------------------------------------------------

    def dashboard(self, scope: Scope, group_by: str = "run") -> Dashboard:
        """Every dashboard table for ``scope``; agreement is broken down overall and by ``group_by``
        (one of ``disagreement.GROUPS``). Cached until the database changes."""
        if group_by not in dis.GROUPS:
            raise ValueError(f"unknown grouping {group_by!r}; choose from {', '.join(dis.GROUPS)}")
        frames = self.frames()
        key = (scope, group_by)
        with self._lock:
            if self._dash_version == self._version and key in self._dashboards:
                return self._dashboards[key]
        d = self._compute(frames, scope, group_by)
        with self._lock:
            if self._dash_version != self._version:
                self._dashboards, self._dash_version = {}, self._version
            self._dashboards[key] = d
        return d

    def _compute(self, frames: Frames, scope: Scope, group_by: str) -> Dashboard:
        f = _scoped(frames, scope)
        refs = _reference(f.refs, scope.reference)
        gold = f.refs[f.refs["reference"] == GOLD]
        pairs, alpha = dis.inter_annotator(f.labels)
        both = f.results[f.results["position_consistent"].notna()]
        votes = f.judgments[~f.judgments["retried"]]  # the samples' last tries: the ones that vote
        samples = comp.sample_references(votes, refs)
        side = dis.runs_side_by_side(f.results, f.refs, f.judgments)
        return Dashboard(
            scope=scope,
            headline=dis.headline(refs),
            alpha=alpha,
            flip=wilson(int(both["inconsistent"].sum()), len(both)),
            counts={
                "items": int(f.items["item_id"].nunique()),
                "runs": int(f.results["run"].nunique()),
                "judgments": len(f.judgments),
                "labels": len(f.labels),
                "annotators": int(f.labels["annotator"].nunique()),
                "references": len(refs),
                "decisive": int(refs["decisive"].sum()),
            },
            by_group={
                "overall": dis.model_vs_reference(refs, None),
                group_by: dis.model_vs_reference(refs, dis.GROUPS[group_by]),
            },  # fmt: skip
            gold_by_run=dis.model_vs_reference(gold, "run"),
            confusion=dis.confusion_matrix(refs if scope.reference != GOLD else gold),
            annotator_pairs=pairs,
            flips=dis.flip_rate(f.results, "run"),
            splits=dis.vote_splits(f.results),
            by_margin=dis.agreement_by_margin(refs),
            runs=side,
            tokens=comp.token_histogram(f.judgments),
            tokens_by_subset=comp.distribution(f.judgments, "reasoning_tokens", "subset"),
            tokens_by_status=comp.distribution(f.judgments, "reasoning_tokens", "status"),
            ttft=comp.distribution(f.judgments, "ttft_s", "backend"),
            latency=comp.distribution(f.judgments, "latency_s", "backend"),
            throughput=comp.distribution(f.judgments, "tokens_per_s", "backend"),
            totals=comp.run_totals(f.judgments, f.results),
            by_length=comp.accuracy_by_length(samples),
            by_votes=comp.accuracy_by_votes(votes, refs),
            fixed_vs_adaptive=comp.compute_vs_accuracy(side),
        )

    # --- the explorer ----------------------------------------------------------------------

    def explore(self, drill: Drill, limit: int = EXPLORER_LIMIT) -> tuple[pd.DataFrame, int]:
        """The rows (one per run and item; items never judged get one row without a run) matching
        ``drill``, sorted, at most ``limit``; and how many matched in all."""
        f = self.frames()
        with self._lock:  # the rows are derived from the frames: built once per database version
            if self._rows is None or self._rows[0] is not f:
                self._rows = (f, _explorer_rows(f))
            rows = self._rows[1]
        keep = np.ones(len(rows), dtype=bool)
        eq = {"dataset": drill.dataset, "run": drill.run, "subset": drill.subset, "split": drill.split,
              "margin": drill.margin, "backend": drill.backend}  # fmt: skip
        for col, value in eq.items():
            if value is not None and value != "":
                keep &= (rows[col] == value).to_numpy()
        if drill.annotator:
            items = set(f.labels.loc[f.labels["annotator"] == drill.annotator, "item_id"])
            keep &= rows["item_id"].isin(items).to_numpy()
        for flag in drill.flags:
            keep &= _flag(rows, f, flag, drill.annotator).to_numpy()
        if drill.ref_choice or drill.model_choice:
            keep &= _cell(rows, f, drill).to_numpy()
        if drill.bucket or drill.status:
            j = f.judgments
            sel = np.ones(len(j), dtype=bool)
            if drill.bucket:
                sel &= (j["length_bucket"].astype(str) == drill.bucket).to_numpy()
            if drill.status:
                sel &= (j["status"] == drill.status).to_numpy()
            keep &= _has_key(rows, j[sel]).to_numpy()
        rows = rows[keep]
        if drill.text.strip():
            found = self.repo.search_items(drill.text.strip(), None)
            rows = rows[rows["item_id"].isin(found)]
        cols, asc = SORTS.get(drill.sort, SORTS["item"])
        rows = rows.sort_values(cols, ascending=asc, na_position="last", kind="stable")
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


def _scoped(f: Frames, scope: Scope) -> Frames:
    def narrow(df: pd.DataFrame, run_col: str | None = "run") -> pd.DataFrame:
        keep = np.ones(len(df), dtype=bool)
        if scope.dataset:
            keep &= (df["dataset"] == scope.dataset).to_numpy()
        if scope.runs and run_col:
            keep &= df[run_col].isin(scope.runs).to_numpy()
        return df[keep]

    return replace(
        f,
        results=narrow(f.results),
        refs=narrow(f.refs),
        judgments=narrow(f.judgments),
        labels=narrow(f.labels, None),
        items=narrow(f.items, None),
    )


def _reference(refs: pd.DataFrame, reference: str) -> pd.DataFrame:
    if reference == HUMANS:
        return refs[refs["reference"] == "human"]
    if reference == GOLD:
        return refs[refs["reference"] == GOLD]
    return refs[(refs["reference"] == "human") & (refs["rater"] == reference)]


def _explorer_rows(f: Frames) -> pd.DataFrame:
    """One row per (run, item), plus one per item no run has judged."""
    judged = set(f.results["item_id"])
    unjudged = f.items[~f.items["item_id"].isin(judged)]
    rows = pd.concat([f.results, unjudged], ignore_index=True)
    counts = f.labels.groupby(["item_id", "choice"]).size().unstack(fill_value=0)
    humans = pd.Series("", index=counts.index, dtype=object)
    for choice in counts.columns:
        c = counts[choice]
        humans = humans + np.where(c > 0, choice + np.where(c > 1, "x" + c.astype(str), "") + " ", "")
    rows["humans"] = rows["item_id"].map(humans.str.strip()).fillna("")
    rows["labels"] = rows["item_id"].map(counts.sum(axis=1)).fillna(0).astype(int)
    return rows


def _flag(rows: pd.DataFrame, f: Frames, flag: str, annotator: str | None) -> pd.Series:
    if flag in ("disagree_human", "disagree_gold"):
        r = f.refs[f.refs["decisive"] & ~f.refs["agree"]]
        r = r[r["reference"] == ("human" if flag == "disagree_human" else GOLD)]
        if annotator and flag == "disagree_human":
            r = r[r["rater"] == annotator]
        return _has_key(rows, r)
    if flag == "split_votes":
        return rows["split_votes"].eq(True)
    if flag == "inconsistent":
        return rows["inconsistent"].eq(True)
    if flag == "truncated":
        return rows["n_truncated"].fillna(0) > 0
    if flag == "no_verdict":
        return rows["model_choice"].eq("none")
    if flag == "has_gold":
        return rows["gold_choice"].notna()
    if flag == "labelled":
        return rows["labels"] > 0
    if flag == "unlabelled":
        return rows["labels"] == 0
    raise ValueError(f"unknown filter {flag!r}; choose from {', '.join(FLAGS)}")


def _cell(rows: pd.DataFrame, f: Frames, drill: Drill) -> pd.Series:
    r = _reference(f.refs, drill.reference or HUMANS)
    if drill.ref_choice:
        r = r[r["ref_choice"] == drill.ref_choice]
    if drill.model_choice:
        r = r[r["model_choice"] == drill.model_choice]
    return _has_key(rows, r)


def _has_key(rows: pd.DataFrame, other: pd.DataFrame) -> pd.Series:
    """Whether each row's (run_id, item_id) occurs in ``other``."""
    keys = pd.MultiIndex.from_arrays([other["run_id"], other["item_id"]])
    mine = pd.MultiIndex.from_arrays([rows["run_id"], rows["item_id"]])
    return pd.Series(mine.isin(keys), index=rows.index)
