"""The Explorer's filter engine: one row per (run, item), and the filters that narrow them.

Pure pandas over :class:`~rrm_ui.analysis.frames.Frames` (no storage, no Gradio). A
:class:`Drill` is one explorer filter; every chart point of :mod:`rrm_ui.analysis.charts` carries
the JSON of one (built from typed fields, so a chart cannot name a field that does not exist), and
:meth:`rrm_ui.services.insights.Insights.explore` applies it (the free-text search, which needs
the database, is the service's).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from rrm_ui.analysis.frames import GOLD, MAJORITY, NO_MAJORITY, Frames, guideline_names, majority
from rrm_ui.analysis.references import HUMANS, select_reference

FLAGS = {
    "disagree_human": "model disagrees with a human",
    "disagree_gold": "model disagrees with gold",
    "split_votes": "split votes",
    "inconsistent": "verdict flips with the order",
    "truncated": "a sample was truncated",
    "forced": "a sample's thinking was closed by budget forcing",
    "no_verdict": "model decided nothing",
    "labelled": "has human labels",
    "has_gold": "has a gold label",
    "unlabelled": "no human label",
    "disagree_majority": "model disagrees with the human majority",
    "no_majority": "humans have no majority",
}
SORTS = {
    "item": (["item_id", "run"], [True, True]),
    "most reasoning tokens": (["reasoning_tokens"], [False]),
    "slowest": (["latency_s"], [False]),
    "closest votes": (["margin"], [True]),
}

@dataclass(frozen=True)
class Drill:
    """An explorer filter; every field left at its default filters nothing."""

    dataset: str | None = None
    run: str | None = None
    subset: str | None = None
    annotator: str | None = None
    guideline: str | None = None  # rows with a human label made under this guideline version ("(none)": without)
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
    versus: str | None = None  # another run: rows whose best response differs from that run's on the item
    sort: str = "item"

    def to_dict(self) -> dict[str, Any]:
        # getattr per field, not dataclasses.asdict (which deep-copies): a page's charts make hundreds of these
        values = ((k, getattr(self, k)) for k in _DEFAULTS)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values if v != _DEFAULTS[k]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Drill:
        known = {k: tuple(v) if k == "flags" else v for k, v in d.items() if k in _DEFAULTS}
        return cls(**known)

    def to_json(self) -> str:
        """The JSON a chart point carries (sorted keys, defaults left out)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def narrow(self, **fields: Any) -> Drill:
        """This filter with more fields set (``None`` leaves a field as it is; ``flags`` are added)."""
        given = {k: v for k, v in fields.items() if v is not None}
        if "flags" in given:
            given["flags"] = (*self.flags, *(f for f in given["flags"] if f not in self.flags))
        return replace(self, **given)

    def describe(self) -> str:
        parts = [f"{k} = {', '.join(v) if isinstance(v, list) else v}" for k, v in self.to_dict().items()
                 if k != "sort"]  # fmt: skip
        return "; ".join(parts) or "everything"


_DEFAULTS = {k: v for k, v in asdict(Drill()).items()}


def matches(rows: pd.DataFrame, f: Frames, drill: Drill) -> np.ndarray:
    """Which of ``rows`` (from :func:`explorer_rows`) the drill keeps: every filter but the free text."""
    keep = np.ones(len(rows), dtype=bool)
    eq = {"dataset": drill.dataset, "run": drill.run, "subset": drill.subset, "split": drill.split,
          "margin": drill.margin, "backend": drill.backend}  # fmt: skip
    for col, value in eq.items():
        if value is not None and value != "":
            keep &= (rows[col] == value).to_numpy()
    if drill.annotator:
        items = set(f.labels.loc[f.labels["annotator"] == drill.annotator, "item_id"])
        keep &= rows["item_id"].isin(items).to_numpy()
    if drill.guideline:
        items = set(f.labels.loc[guideline_names(f.labels) == drill.guideline, "item_id"])
        keep &= rows["item_id"].isin(items).to_numpy()
    for flag in drill.flags:
        keep &= _flag(rows, f, flag, drill.annotator).to_numpy()
    if drill.ref_choice or drill.model_choice:
        keep &= _cell(rows, f, drill).to_numpy()
    if drill.versus:
        other = f.results.loc[f.results["run"] == drill.versus, ["item_id", "best"]].drop_duplicates("item_id")
        theirs = rows["item_id"].map(other.set_index("item_id")["best"])
        keep &= (theirs.notna() & (rows["run"] != drill.versus) & (theirs != rows["best"])).to_numpy()
    if drill.bucket or drill.status:
        j = f.judgments
        sel = np.ones(len(j), dtype=bool)
        if drill.bucket:
            sel &= (j["length_bucket"].astype(str) == drill.bucket).to_numpy()
        if drill.status:
            sel &= (j["status"] == drill.status).to_numpy()
        keep &= _has_key(rows, j[sel]).to_numpy()
    return keep


def sort(rows: pd.DataFrame, how: str) -> pd.DataFrame:
    """``rows`` in one of the :data:`SORTS` orders (``item`` for an unknown one), missing values last."""
    cols, asc = SORTS.get(how, SORTS["item"])
    return rows.sort_values(cols, ascending=asc, na_position="last", kind="stable")


def explorer_rows(f: Frames) -> pd.DataFrame:
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
    if flag == "disagree_majority":
        r = f.refs[f.refs["decisive"] & ~f.refs["agree"] & (f.refs["reference"] == MAJORITY)]
        return _has_key(rows, r)
    if flag == "no_majority":
        return rows["item_id"].isin(_no_majority_items(f))
    if flag == "split_votes":
        return rows["split_votes"].eq(True)
    if flag == "inconsistent":
        return rows["inconsistent"].eq(True)
    if flag == "truncated":
        return rows["n_truncated"].fillna(0) > 0
    if flag == "forced":
        return rows["n_forced"].fillna(0) > 0 if "n_forced" in rows else pd.Series(False, index=rows.index)
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
    r = select_reference(f.refs, drill.reference or HUMANS)
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


def _no_majority_items(f: Frames) -> set[int]:
    """Items with a comparison whose labels have no majority (judged by a run or not)."""
    m = majority(f.labels)
    return set(m.loc[m["choice"] == NO_MAJORITY, "item_id"])
