"""The tidy frames every dashboard figure and the explorer are computed from.

Built once per database version from :class:`~rrm_ui.storage.repo_analytics.AnalyticsFrames`
with vectorized pandas (no loops over rows except for the rare list items).

Vocabulary (docs/dashboards.md says the same for users):
- a *comparison* is a pair of responses ``(i, j)`` of an item with ``i < j``; a choice ``A``
  means response ``i`` is better, ``B`` response ``j``;
- the *model's choice* on a pair: ``A``/``B`` from the run's latest aggregate (the winner of a
  pair item; for a list item, the outcome of the comparison of that very pair the run judged),
  ``none`` when it decided nothing (a tie of votes, no valid verdict; a list whose top is tied);
  missing (``None``, *not compared*) for a pair of a list the run never compared (a knockout's
  candidates that never met): a reference on it counts neither as agreement nor as disagreement;
- a *reference* is a human's latest label on the pair (``A``/``B``/``tie``/``both_bad``) or the
  data set's gold label (``A``/``B``/``tie``, from ``gold_tiers``). Agreement and kappa count
  the decisive references (``A``/``B``) on compared pairs; a model ``none`` there is a
  disagreement.
- For a list item, the gold reference and the explorer's row are about the model's top two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rrm_ui.protocol import FORMATS
from rrm_ui.protocol.base import ERROR_DROPPED, ERROR_ZERO
from rrm_ui.storage.repo_analytics import AnalyticsFrames

MODEL_CHOICES = ("A", "B", "none")
HUMAN_CHOICES = ("A", "B", "tie", "both_bad")
DECISIVE = ("A", "B")
THREE_WAY = ("A", "B", "tie")
GOLD = "gold"
MAJORITY = "majority"  # the reference (and rater) of the human majority's rows in ``refs``
ADJUDICATED = "adjudicated"  # the reference of a reviewer's final labels (docs/review.md) in ``refs``
NO_MAJORITY = "no_majority"  # the majority's choice on a comparison where two classes share the most labels
TOKEN_BUCKETS = (0, 256, 512, 1024, 2048, 4096, 8192, 16384)


@dataclass(frozen=True)
class Frames:
    """Derived frames (see the module docstring).

    - ``results``: one row per (run, item) with the run's choice on the item's pair, votes,
      margin, split, flip, gold and the judgments' totals;
    - ``refs``: one row per (reference, run, comparison): a human label or a gold label set
      beside the run's choice on the same pair;
    - ``judgments``: one row per try of a sample with its run, backend, subset and its own choice;
      ``retried`` marks a failed try that was tried again (it has no vote; the last try has);
    - ``labels``: the latest labels with dataset and subset, pairs put in ``i < j`` order;
    - ``runs``: run metadata with a readable compute mode.
    """

    results: pd.DataFrame
    refs: pd.DataFrame
    judgments: pd.DataFrame
    labels: pd.DataFrame
    runs: pd.DataFrame
    items: pd.DataFrame
    adjudications: pd.DataFrame | None = None  # the latest reviewer's decision per comparison, i < j


def build(raw: AnalyticsFrames) -> Frames:
    items = _items(raw.items)
    runs = _runs(raw.runs)
    judgments = _judgments(raw.judgments, runs, items)
    results = _results(raw.results, runs, items, judgments)
    labels = _labels(raw.labels, items)
    adjudications = _adjudications(raw.adjudications)
    refs = _refs(results, labels, adjudications)
    return Frames(results, refs, judgments, labels, runs, items, adjudications)


def update(old: Frames, raw: AnalyticsFrames) -> Frames:
    """The frames of ``raw``, read incrementally since the frames ``old`` was built from, deriving only
    what the new rows change (``raw.changed`` names the tables that got rows) and reusing the rest, so
    a write costs what it touches, not a rebuild of 100,000 judgments:

    - judgments: the new rows are derived and appended; ``retried`` is recomputed for their samples;
    - results: the new or replaced results, and those whose judgments got rows (their totals), are
      derived again; the others are kept;
    - labels: derived again (they are few and cheap);
    - references: those of the items whose results or labels changed are made again, the others kept.

    A frame whose inputs did not change is the same object as in ``old``. New items or runs, a full
    read, or rows gone since ``old`` (not append-only) build everything again. The rows may come in
    another order than :func:`build`'s; every figure is computed over them as a set."""
    changed = raw.changed
    if changed is None or changed & {"items", "runs"}:
        return build(raw)
    if not changed:
        return old
    judgments, dirty = old.judgments, np.zeros(0, dtype=np.int64)  # dirty: (run, item) keys with new judgments
    if "judgments" in changed:
        ids = raw.judgments["id"].to_numpy()
        have = old.judgments["judgment_id"].to_numpy()
        fresh = ~np.isin(ids, have)
        if int(fresh.sum()) != len(ids) - len(have):  # a row seen before is gone
            return build(raw)
        judgments = _append_judgments(old.judgments, _judgments(raw.judgments[fresh], old.runs, old.items))
        new = judgments.iloc[len(old.judgments):]
        dirty = np.unique(_key(new["run_id"], new["item_id"]))
    results, touched = old.results, np.zeros(0, dtype=np.int64)  # touched: items whose results changed
    if changed & {"judgments", "results"}:
        results, touched = _update_results(old, raw, judgments, dirty)
        if results is None:
            return build(raw)
    labels = _labels(raw.labels, old.items) if "labels" in changed else old.labels
    if "labels" in changed:
        touched = np.union1d(touched, _changed_items(old.labels, labels, "label_id"))
    adjudications = old.adjudications if old.adjudications is not None else _adjudications(raw.adjudications)
    if "adjudications" in changed:
        adjudications = _adjudications(raw.adjudications)
        touched = np.union1d(touched, _changed_items(old.adjudications, adjudications, "adjudication_id"))
    refs = old.refs
    if len(touched):
        keep = ~old.refs["item_id"].isin(touched).to_numpy()
        again = _refs(results[results["item_id"].isin(touched).to_numpy()], labels[labels["item_id"].isin(touched)],
                      adjudications[adjudications["item_id"].isin(touched)])  # fmt: skip
        refs = _concat(old.refs[keep], again)
    return Frames(results, refs, judgments, labels, old.runs, old.items, adjudications)


def _key(run_id: pd.Series, item_id: pd.Series) -> np.ndarray:
    """One integer per (run, item)."""
    return run_id.to_numpy(dtype=np.int64) * (1 << 32) + item_id.to_numpy(dtype=np.int64)


def _concat(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` then ``new`` (one of them may be empty: the other's columns and dtypes are kept)."""
    if new.empty:
        return old.reset_index(drop=True)
    if old.empty:
        return new.reset_index(drop=True)
    return pd.concat([old, new[old.columns]], ignore_index=True)


def _append_judgments(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` with the derived ``new`` rows, ``retried`` recomputed for the samples they belong to."""
    both = _concat(old, new)
    if both.empty or both["attempt"].max() == 0:
        return both
    sample = ["run_id", "item_id", "a", "b", "sample"]
    keys = pd.MultiIndex.from_frame(both[sample])
    hit = keys.isin(pd.MultiIndex.from_frame(new[sample]))
    if hit.any():
        part = both.loc[hit, [*sample, "attempt"]]
        last = part.groupby(sample)["attempt"].transform("max")
        retried = both["retried"].to_numpy(dtype=bool, copy=True)
        retried[np.flatnonzero(hit)] = (part["attempt"] < last).to_numpy()
        both["retried"] = retried
    return both


def _update_results(old: Frames, raw: AnalyticsFrames, judgments: pd.DataFrame,
                    dirty: np.ndarray) -> tuple[pd.DataFrame | None, np.ndarray]:  # fmt: skip
    """The results frame after an incremental read and the items whose results changed; None when a
    result seen before is gone."""
    ids = raw.results["id"].to_numpy()
    have = old.results["id"].to_numpy()
    if not np.isin(have, ids).all() and not _superseded(old.results, raw.results):
        return None, np.zeros(0, dtype=np.int64)
    raw_key = _key(raw.results["run_id"], raw.results["item_id"])
    again = ~np.isin(ids, have) | np.isin(raw_key, dirty)  # new or replaced, or new judgments
    if not again.any():
        return old.results, np.zeros(0, dtype=np.int64)
    keys = raw_key[again]
    mine = np.isin(_key(judgments["run_id"], judgments["item_id"]), keys)
    derived = _results(raw.results[again], old.runs, old.items, judgments[mine])
    kept = old.results[~np.isin(_key(old.results["run_id"], old.results["item_id"]), keys)]
    return _concat(kept, derived), np.unique(raw.results["item_id"].to_numpy()[again])


def _superseded(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Whether every result of ``old`` missing from ``new`` was replaced by a newer one of its (run, item)."""
    gone = old[~old["id"].isin(new["id"])]
    return bool(np.isin(_key(gone["run_id"], gone["item_id"]), _key(new["run_id"], new["item_id"])).all())


def _changed_items(old: pd.DataFrame | None, new: pd.DataFrame, id_col: str) -> np.ndarray:
    """Items with a row in ``new`` that ``old`` did not have (or a row of ``old`` no longer there)."""
    if old is None:
        return np.unique(new["item_id"].to_numpy(dtype=np.int64))
    added = ~new[id_col].isin(old[id_col])
    gone = ~old[id_col].isin(new[id_col])
    return np.union1d(new.loc[added, "item_id"].to_numpy(dtype=np.int64),
                      old.loc[gone, "item_id"].to_numpy(dtype=np.int64))  # fmt: skip


# --- pieces --------------------------------------------------------------------------------------


def _items(items: pd.DataFrame) -> pd.DataFrame:
    items = items.rename(columns={"id": "item_id"}).copy()
    items["subset"] = items["subset"].fillna("(none)")
    return items


def _runs(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.rename(columns={"id": "run_id", "name": "run", "kind": "run_kind"}).copy()
    templates = runs["template"] if "template" in runs else [None] * len(runs)
    runs["mode"] = [compute_mode(kind, c, t)
                    for kind, c, t in zip(runs["run_kind"], runs["compute"], templates, strict=True)]  # fmt: skip
    runs["backend"] = runs["backend"].fillna("external")
    runs["error_score"] = [error_score(t) for t in runs["template"]] if "template" in runs else np.nan
    return runs


def error_score(template: Any) -> float:
    """What a verdict the run did not reach scores in its format's paper (``JudgeFormat.error_score``):
    0.5 (RewardBench: a tie), 0 (RM-R1), nan when its evaluation leaves the match out. A format
    without a rule of its own, or an external run, is scored as RewardBench does: 0.5."""
    fmt = FORMATS.get(template) if isinstance(template, str) else None
    rule = getattr(fmt, "error_score", None)
    return 0.0 if rule == ERROR_ZERO else np.nan if rule == ERROR_DROPPED else 0.5


def compute_mode(kind: str, compute: Any, template: Any = None) -> str:
    """``fixed: 4 votes x 2 orders``, ``adaptive: up to 8 samples, margin 2`` (``Beta 0.95`` under the Beta
    stopping rule; ``, shuffled order`` with one seeded order per vote; ``, thinking up to 4096`` with adaptive
    escalation), ``scores`` (a scalar reward model's run, format ``template``: compute does not apply, whatever
    an older run stored) or ``external``."""
    if kind != "judge":
        return "external"
    fmt = FORMATS.get(template) if isinstance(template, str) else None
    if getattr(fmt, "scores", False):
        return "scores: one per response"
    c = compute or {}
    shuffled = ", shuffled order" if c.get("order") == "shuffled" else ""
    if c.get("adaptive"):
        rule = (f"Beta {c.get('confidence', 0.95):g}" if c.get("stopping") == "beta"
                else f"margin {c.get('margin', '?')}")  # fmt: skip
        raised = f", thinking up to {c['escalate_to']}" if c.get("escalate_to") else ""
        return f"adaptive: up to {c.get('budget', '?')} samples, {rule}{shuffled}{raised}"
    votes = c.get("votes", 1)
    orders = " x 2 orders" if c.get("swap") else ""
    return f"fixed: {votes} vote{'s' if votes != 1 else ''}{orders}{shuffled}"


def _judgments(j: pd.DataFrame, runs: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    j = j.rename(columns={"id": "judgment_id"}).copy()
    j = j.merge(runs[["run_id", "run", "backend", "mode"]], on="run_id", how="left")
    j = j.merge(items[["item_id", "dataset", "subset"]], on="item_id", how="left")
    decode_s = j["latency_s"] - j["ttft_s"].fillna(0)
    j["tokens_per_s"] = (j["completion_tokens"] / decode_s).where(decode_s > 0)
    won = np.where(j["verdict"] == "A", j["a"], np.where(j["verdict"] == "B", j["b"], -1))
    j["winner"] = won
    j["i"] = np.minimum(j["a"], j["b"])
    j["j"] = np.maximum(j["a"], j["b"])
    j["choice"] = np.select([won == j["i"], won == j["j"]], ["A", "B"], "none")
    j["forced_close"] = _forced(j)  # budget forcing closed the thinking: one bool column, False where unknown
    # A failed try that was tried again: real compute (counted in the compute charts), but no vote.
    if len(j) and j["attempt"].max() > 0:
        last = j.groupby(["run_id", "item_id", "a", "b", "sample"])["attempt"].transform("max")
        j["retried"] = j["attempt"] < last
    else:
        j["retried"] = False
    edges = [*TOKEN_BUCKETS, np.inf]
    j["length_bucket"] = pd.cut(j["reasoning_tokens"].fillna(0), edges, right=False, labels=bucket_labels())
    return j


def bucket_labels() -> list[str]:
    edges = list(TOKEN_BUCKETS)
    return [f"{_k(lo)}-{_k(hi)}" for lo, hi in zip(edges, edges[1:], strict=False)] + [f"{_k(edges[-1])}+"]


def _k(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 else str(n)


def _results(res: pd.DataFrame, runs: pd.DataFrame, items: pd.DataFrame, judgments: pd.DataFrame) -> pd.DataFrame:
    if len(res) < len(items):  # a few results (after a write): only their items are merged and mapped
        items = items[items["item_id"].isin(res["item_id"])]
    r = res.merge(runs[["run_id", "run", "run_kind", "backend", "mode", "error_score"]], on="run_id", how="left")
    r = r.merge(items[["item_id", "dataset", "ext_id", "subset", "n_responses", "gold_tiers", "preview"]],
                on="item_id", how="left")  # fmt: skip
    pair = (r["n_responses"] == 2).to_numpy()
    lists = np.flatnonzero(~pair)  # few: lists are about the model's top two
    pi, pj = np.zeros(len(r), dtype=int), np.ones(len(r), dtype=int)
    rankings, pairs, tiers = (r[c].to_numpy(dtype=object) for c in ("ranking", "pairs", "gold_tiers"))
    for k in lists:  # loops over plain arrays: a pandas lookup (or an Arrow column's set) per row is slow
        pi[k], pj[k] = _top_two(rankings[k])
    r["pair_i"], r["pair_j"] = pi, pj
    choice, three = model_choice(r, r["pair_i"], r["pair_j"])
    tied_list = ~pair & r["winner"].isna().to_numpy()
    choice[tied_list] = "none"  # a list without a winner decided nothing, whatever its top pair's outcome
    three[tied_list] = np.where(r["decision"].to_numpy()[tied_list] == "tie", "tie", "none")
    r["model_choice"], r["model_choice3"] = choice, three
    r["best"] = best_response(r)
    vi = r["votes_0"].fillna(0).to_numpy(dtype=np.int64, copy=True)  # read in SQL: no JSON decoded per result
    vj = r["votes_1"].fillna(0).to_numpy(dtype=np.int64, copy=True)
    for k in lists:  # the votes of the top pair's own comparison, not the item's sum over all matches
        vi[k], vj[k] = pair_votes(pairs[k], pi[k], pj[k])
    r["votes_i"], r["votes_j"] = vi, vj
    has_votes = r["votes_i"] + r["votes_j"] > 0
    r["margin"] = (r["votes_i"] - r["votes_j"]).abs().where(has_votes)
    hi, lo = np.maximum(vi, vj), np.minimum(vi, vj)
    r["split"] = pd.Series([f"{a}-{b}" for a, b in zip(hi, lo, strict=True)], index=r.index).where(has_votes)
    r["split_votes"] = has_votes & (lo > 0)
    r["inconsistent"] = r["position_consistent"].eq(False)
    gold01 = items.set_index("item_id")["gold_tiers"].map(lambda g: _gold(g, 0, 1))  # one per item, not per run
    gold_choice = r["item_id"].map(gold01).to_numpy(dtype=object, copy=True)
    for k in lists:
        gold_choice[k] = _gold(tiers[k], pi[k], pj[k])
    r["gold_choice"] = gold_choice
    flagged = judgments.assign(truncated=judgments["status"] == "truncated", no_verdict=judgments["verdict"].isna())
    agg = flagged.groupby(["run_id", "item_id"]).agg(
        n_judgments=("judgment_id", "size"),
        n_truncated=("truncated", "sum"),
        n_forced=("forced_close", "sum"),
        n_no_verdict=("no_verdict", "sum"),
        reasoning_tokens=("reasoning_tokens", "sum"),
        completion_tokens=("completion_tokens", "sum"),
        latency_s=("latency_s", "sum"),
    )
    r = r.merge(agg.reset_index(), on=["run_id", "item_id"], how="left")
    for col in ("n_judgments", "n_truncated", "n_forced", "n_no_verdict", "reasoning_tokens", "completion_tokens"):
        r[col] = r[col].fillna(0).astype(int)
    return r.drop(columns=["gold_tiers"])


def _forced(judgments: pd.DataFrame) -> pd.Series:
    """Whether budget forcing closed each judgment's thinking (False where the column is missing)."""
    if "forced_close" not in judgments.columns:
        return pd.Series(False, index=judgments.index)
    return judgments["forced_close"].fillna(False).astype(bool)


def best_response(r: pd.DataFrame) -> np.ndarray:
    """Each result's best response as a category (what two runs are compared on): ``A``/``B`` for a pair
    item, ``response k`` (1-based) for a list item, ``none`` without a winner."""
    w = r["winner"]
    pair = r["n_responses"].to_numpy() == 2
    listed = "response " + (w.fillna(-1).astype(int) + 1).astype(str)
    named = np.where(pair, np.where(w.to_numpy() == 0, "A", "B"), listed.to_numpy())
    return np.where(w.isna().to_numpy(), "none", named).astype(object)


def _top_two(ranking: Any) -> tuple[int, int]:
    if ranking is not None and len(ranking) >= 2:
        i, j = sorted((int(ranking[0]), int(ranking[1])))
        return i, j
    return 0, 1


def _outcome(pairs: Any, i: int, j: int) -> dict[str, Any] | None:
    """The stored outcome of the comparison of responses i and j (the last one if judged twice)."""
    found = None
    for p in pairs if isinstance(pairs, list | tuple) else ():
        if isinstance(p, dict) and {p.get("i"), p.get("j")} == {i, j}:
            found = p
    return found


def pair_votes(pairs: Any, i: int, j: int) -> tuple[int, int]:
    """Votes for i and for j in their own comparison (0, 0 when the pair was never compared)."""
    p = _outcome(pairs, i, j)
    if p is None:
        return 0, 0
    return _vote(p.get("votes"), i), _vote(p.get("votes"), j)


def _vote(votes: Any, idx: int) -> int:
    if not votes:
        return 0
    return int(votes.get(str(idx), votes.get(idx, 0)) or 0)


def _gold(tiers: Any, i: int, j: int) -> str | None:
    if tiers is None or not isinstance(tiers, list | tuple) or max(i, j) >= len(tiers):
        return None
    ti, tj = tiers[i], tiers[j]
    return "A" if ti < tj else "B" if ti > tj else "tie"


def model_choice(r: pd.DataFrame, i: pd.Series, j: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The run's choice on pair (i, j) of each row (``winner``, ``decision``, ``pairs``, ``n_responses``
    columns): two-way (``A``/``B``/``none``) and three-way (``A``/``B``/``tie``/``none``).

    A pair item: its winner; without one, ``tie`` (three-way) when valid votes split evenly or an
    external judge said tie (decision ``tie``), ``none`` when no valid verdict was reached. A list
    item: the outcome of the comparison of i and j that the run judged, read the same way; ``None``
    in both when it never compared them.
    """
    winner = r["winner"]
    pair = r["n_responses"].to_numpy() == 2
    out = np.select([winner.eq(i).to_numpy(), winner.eq(j).to_numpy()], ["A", "B"], "none").astype(object)
    tie = (out == "none") & (r["decision"] == "tie").to_numpy()
    three = np.where(tie, "tie", out).astype(object)
    ii, jj, pairs = i.to_numpy(), j.to_numpy(), r["pairs"].to_numpy(dtype=object)
    for k in np.flatnonzero(~pair):  # lists (few): the pair's own comparison
        a, b = int(ii[k]), int(jj[k])
        p = _outcome(pairs[k], a, b)
        if p is None:
            out[k] = three[k] = None
        else:
            w = p.get("winner")
            out[k] = "A" if w == a else "B" if w == b else "none"
            voted = sum(_vote(p.get("votes"), x) for x in (a, b)) > 0
            three[k] = out[k] if out[k] != "none" else "tie" if voted else "none"
    return out, three


def _labels(labels: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    lab = labels.rename(columns={"id": "label_id", "run_id": "seen_run_id"}).copy()
    swap = lab["pair_i"] > lab["pair_j"]
    lab["i"] = np.where(swap, lab["pair_j"], lab["pair_i"])
    lab["j"] = np.where(swap, lab["pair_i"], lab["pair_j"])
    mirrored = lab["choice"].map({"A": "B", "B": "A"}).fillna(lab["choice"])
    lab["choice"] = np.where(swap, mirrored, lab["choice"])
    if swap.any():  # a label given on (j, i) replaces an older one on (i, j) by the same annotator, and back
        lab = lab.sort_values("label_id", kind="stable").drop_duplicates(["annotator", "item_id", "i", "j"],
                                                                         keep="last")  # fmt: skip
    lab = lab.merge(items[["item_id", "dataset", "subset"]], on="item_id", how="left")
    return lab.drop(columns=["pair_i", "pair_j"])


def majority(labels: pd.DataFrame) -> pd.DataFrame:
    """The human majority per comparison: one row per (item_id, i, j) with ``choice`` (the class with
    more of the annotators' latest labels than any other: ``A``, ``B``, ``tie`` or ``both_bad``, a
    tie being a class like the others; ``no_majority`` when two classes share the most) and
    ``raters`` (how many annotators labelled it)."""
    if labels.empty:
        return pd.DataFrame({"item_id": pd.Series([], dtype=np.int64), "i": pd.Series([], dtype=np.int64),
                             "j": pd.Series([], dtype=np.int64), "choice": pd.Series([], dtype=object),
                             "raters": pd.Series([], dtype=np.int64)})  # fmt: skip
    counts = labels.groupby(["item_id", "i", "j", "choice"]).size().rename("n").reset_index()
    top = counts.groupby(["item_id", "i", "j"])["n"].transform("max")
    best = counts[counts["n"] == top]
    n_best = best.groupby(["item_id", "i", "j"])["choice"].transform("size")
    best = best.assign(choice=np.where(n_best > 1, NO_MAJORITY, best["choice"]))
    best = best.drop_duplicates(["item_id", "i", "j"])[["item_id", "i", "j", "choice"]]
    raters = labels.groupby(["item_id", "i", "j"])["annotator"].nunique().rename("raters").reset_index()
    return best.merge(raters, on=["item_id", "i", "j"]).reset_index(drop=True)


def _adjudications(adj: pd.DataFrame) -> pd.DataFrame:
    """The reviewers' latest decisions with pairs put in ``i < j`` order (the choice mirrored)."""
    a = adj.rename(columns={"id": "adjudication_id"}).copy()
    pi, pj = a["pair_i"].to_numpy(dtype=np.int64), a["pair_j"].to_numpy(dtype=np.int64)
    swap = pi > pj
    a["i"], a["j"] = np.where(swap, pj, pi), np.where(swap, pi, pj)
    mirrored = a["choice"].map({"A": "B", "B": "A"}).fillna(a["choice"])
    a["choice"] = np.where(swap, mirrored, a["choice"])
    # the latest decision on the comparison, whichever way round its pair was given
    a = a.sort_values("adjudication_id", kind="stable").drop_duplicates(["item_id", "i", "j"], keep="last")
    return a.drop(columns=["pair_i", "pair_j"]).reset_index(drop=True)


NO_GUIDELINE = "(none)"


def guideline_names(labels: pd.DataFrame) -> pd.Series:
    """Each label's guideline version as the dashboards name it: ``v3``, or ``(none)`` without one."""
    if "guideline_version" not in labels.columns:
        return pd.Series(NO_GUIDELINE, index=labels.index, dtype=object)
    v = labels["guideline_version"]
    named = "v" + v.fillna(0).astype(np.int64).astype(str)
    return named.where(v.notna(), NO_GUIDELINE).astype(object)


def _refs(results: pd.DataFrame, labels: pd.DataFrame, adjudications: pd.DataFrame | None = None) -> pd.DataFrame:
    keep = ["run_id", "run", "run_kind", "mode", "item_id", "dataset", "subset", "margin", "split_votes",
            "inconsistent", "error_score"]  # fmt: skip
    maj = majority(labels).assign(annotator=MAJORITY, label_id=pd.NA, guideline=NO_GUIDELINE)
    cols = ["item_id", "i", "j", "annotator", "choice", "label_id", "guideline"]
    blocks = [labels.assign(guideline=guideline_names(labels))[cols].assign(reference="human"),
              maj[cols].assign(reference=MAJORITY)]  # fmt: skip
    if adjudications is not None and len(adjudications):  # a reviewer's final label, the reviewer as its rater
        adj = adjudications.rename(columns={"reviewer": "annotator"}).assign(label_id=pd.NA, guideline=NO_GUIDELINE)
        blocks.append(adj[cols].assign(reference=ADJUDICATED))
    both = pd.concat(blocks, ignore_index=True)
    human = both.merge(results[[*keep, "winner", "decision", "pairs", "n_responses", "pair_i", "pair_j"]],
                       on="item_id")  # fmt: skip
    human = human.rename(columns={"choice": "ref_choice", "annotator": "rater"})
    human["model_choice"], human["model_choice3"] = model_choice(human, human["i"], human["j"])
    other = np.flatnonzero(((human["i"] != human["pair_i"]) | (human["j"] != human["pair_j"])).to_numpy())
    if len(other):  # a label on another pair of a list than the top two: that pair's own votes
        margins = human["margin"].to_numpy(dtype=float, copy=True)
        split = human["split_votes"].to_numpy(dtype=bool, copy=True)
        pairs, ii, jj = human["pairs"].to_numpy(dtype=object), human["i"].to_numpy(), human["j"].to_numpy()
        for k in other:
            vi, vj = pair_votes(pairs[k], int(ii[k]), int(jj[k]))
            margins[k] = abs(vi - vj) if vi + vj > 0 else np.nan
            split[k] = min(vi, vj) > 0
        human["margin"], human["split_votes"] = margins, split
    gold = results[results["gold_choice"].notna()][[*keep, "pair_i", "pair_j", "gold_choice", "model_choice",
                                                     "model_choice3"]]  # fmt: skip
    gold = gold.rename(columns={"pair_i": "i", "pair_j": "j", "gold_choice": "ref_choice"})
    gold = gold.assign(rater=GOLD, reference=GOLD, label_id=pd.NA, guideline=NO_GUIDELINE)
    cols = ["reference", "rater", "label_id", "ref_choice", "model_choice", "model_choice3", "i", "j", "guideline",
            *keep]  # fmt: skip
    refs = pd.concat([human[cols], gold[cols]], ignore_index=True)
    refs["compared"] = refs["model_choice"].notna()  # False: a pair of a list the run never compared
    refs["decisive"] = refs["ref_choice"].isin(DECISIVE) & refs["compared"]
    refs["agree"] = refs["decisive"] & (refs["ref_choice"] == refs["model_choice"])
    refs["three_way"] = refs["ref_choice"].isin(THREE_WAY) & refs["compared"]  # A, B or tie
    refs["agree3"] = refs["three_way"] & (refs["ref_choice"] == refs["model_choice3"])
    return refs
