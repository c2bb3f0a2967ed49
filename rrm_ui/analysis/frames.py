"""The tidy frames every dashboard figure and the explorer are computed from.

Built once per database version from :class:`~rrm_ui.storage.repo_analytics.AnalyticsFrames`
with vectorized pandas (no loops over rows except for the rare list items).

Vocabulary (docs/dashboards.md says the same for users):
- a *comparison* is a pair of responses ``(i, j)`` of an item with ``i < j``; a choice ``A``
  means response ``i`` is better, ``B`` response ``j``;
- the *model's choice* on a pair: ``A``/``B`` from the run's latest aggregate (the winner of a
  pair, the order in the ranking of a list), ``none`` when it decided nothing (a tie of votes, no
  valid verdict);
- a *reference* is a human's latest label on the pair (``A``/``B``/``tie``/``both_bad``) or the
  data set's gold label (``A``/``B``/``tie``, from ``gold_tiers``). Agreement and kappa count
  the decisive references (``A``/``B``); a model ``none`` there is a disagreement.
- For a list item, the gold reference and the explorer's row are about the model's top two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rrm_ui.storage.repo_analytics import AnalyticsFrames

MODEL_CHOICES = ("A", "B", "none")
HUMAN_CHOICES = ("A", "B", "tie", "both_bad")
DECISIVE = ("A", "B")
GOLD = "gold"
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


def build(raw: AnalyticsFrames) -> Frames:
    items = _items(raw.items)
    runs = _runs(raw.runs)
    judgments = _judgments(raw.judgments, runs, items)
    results = _results(raw.results, runs, items, judgments)
    labels = _labels(raw.labels, items)
    refs = _refs(results, labels)
    return Frames(results, refs, judgments, labels, runs, items)


# --- pieces --------------------------------------------------------------------------------------


def _items(items: pd.DataFrame) -> pd.DataFrame:
    items = items.rename(columns={"id": "item_id"}).copy()
    items["subset"] = items["subset"].fillna("(none)")
    return items


def _runs(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.rename(columns={"id": "run_id", "name": "run", "kind": "run_kind"}).copy()
    runs["mode"] = [compute_mode(kind, c) for kind, c in zip(runs["run_kind"], runs["compute"], strict=True)]
    runs["backend"] = runs["backend"].fillna("external")
    return runs


def compute_mode(kind: str, compute: Any) -> str:
    """``fixed: 4 votes x 2 orders``, ``adaptive: up to 8 samples, margin 2`` or ``external``."""
    if kind != "judge":
        return "external"
    c = compute or {}
    if c.get("adaptive"):
        return f"adaptive: up to {c.get('budget', '?')} samples, margin {c.get('margin', '?')}"
    votes = c.get("votes", 1)
    orders = " x 2 orders" if c.get("swap") else ""
    return f"fixed: {votes} vote{'s' if votes != 1 else ''}{orders}"


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
    r = res.merge(runs[["run_id", "run", "run_kind", "backend", "mode"]], on="run_id", how="left")
    r = r.merge(items[["item_id", "dataset", "ext_id", "subset", "n_responses", "gold_tiers", "preview"]],
                on="item_id", how="left")  # fmt: skip
    pair = (r["n_responses"] == 2).to_numpy()
    lists = np.flatnonzero(~pair)  # few: lists are about the model's top two
    pi, pj = np.zeros(len(r), dtype=int), np.ones(len(r), dtype=int)
    for k in lists:
        pi[k], pj[k] = _top_two(r["ranking"].iat[k])
    r["pair_i"], r["pair_j"] = pi, pj
    r["model_choice"] = model_choice(r, r["pair_i"], r["pair_j"])
    votes = r["votes"].tolist()
    vi = np.array([int(v.get("0", 0)) if v else 0 for v in votes])
    vj = np.array([int(v.get("1", 0)) if v else 0 for v in votes])
    for k in lists:
        vi[k], vj[k] = _vote(votes[k], pi[k]), _vote(votes[k], pj[k])
    r["votes_i"], r["votes_j"] = vi, vj
    has_votes = (r["votes_i"] + r["votes_j"] > 0) & pair
    r["margin"] = (r["votes_i"] - r["votes_j"]).abs().where(has_votes)
    hi, lo = np.maximum(vi, vj), np.minimum(vi, vj)
    r["split"] = pd.Series([f"{a}-{b}" for a, b in zip(hi, lo, strict=True)], index=r.index).where(has_votes)
    r["split_votes"] = has_votes & (lo > 0)
    r["inconsistent"] = r["position_consistent"].eq(False)
    gold01 = items.set_index("item_id")["gold_tiers"].map(lambda g: _gold(g, 0, 1))  # one per item, not per run
    r["gold_choice"] = r["item_id"].map(gold01).to_numpy(dtype=object)
    for k in lists:
        r.iat[k, r.columns.get_loc("gold_choice")] = _gold(r["gold_tiers"].iat[k], pi[k], pj[k])
    flagged = judgments.assign(truncated=judgments["status"] == "truncated", no_verdict=judgments["verdict"].isna())
    agg = flagged.groupby(["run_id", "item_id"]).agg(
        n_judgments=("judgment_id", "size"),
        n_truncated=("truncated", "sum"),
        n_no_verdict=("no_verdict", "sum"),
        reasoning_tokens=("reasoning_tokens", "sum"),
        completion_tokens=("completion_tokens", "sum"),
        latency_s=("latency_s", "sum"),
    )
    r = r.merge(agg.reset_index(), on=["run_id", "item_id"], how="left")
    for col in ("n_judgments", "n_truncated", "n_no_verdict", "reasoning_tokens", "completion_tokens"):
        r[col] = r[col].fillna(0).astype(int)
    return r.drop(columns=["gold_tiers"])


def _top_two(ranking: Any) -> tuple[int, int]:
    if ranking is not None and len(ranking) >= 2:
        i, j = sorted((int(ranking[0]), int(ranking[1])))
        return i, j
    return 0, 1


def _vote(votes: Any, idx: int) -> int:
    if not votes:
        return 0
    return int(votes.get(str(idx), votes.get(idx, 0)) or 0)


def _gold(tiers: Any, i: int, j: int) -> str | None:
    if tiers is None or not isinstance(tiers, list | tuple) or max(i, j) >= len(tiers):
        return None
    ti, tj = tiers[i], tiers[j]
    return "A" if ti < tj else "B" if ti > tj else "tie"


def model_choice(r: pd.DataFrame, i: pd.Series, j: pd.Series) -> np.ndarray:
    """The run's choice on pair (i, j) of each row (``winner``, ``ranking``, ``n_responses`` columns)."""
    winner = r["winner"]
    pair = r["n_responses"].to_numpy() == 2
    out = np.select([winner.eq(i).to_numpy(), winner.eq(j).to_numpy()], ["A", "B"], "none").astype(object)
    if (~pair).any():  # lists: the order of i and j in the ranking
        idx = np.flatnonzero(~pair)
        for k in idx:
            ranking = list(r["ranking"].iat[k] or ())
            a, b = int(i.iat[k]), int(j.iat[k])
            if a in ranking and b in ranking:
                out[k] = "A" if ranking.index(a) < ranking.index(b) else "B"
            else:
                out[k] = "none"
    return out


def _labels(labels: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    lab = labels.rename(columns={"id": "label_id", "run_id": "seen_run_id"}).copy()
    swap = lab["pair_i"] > lab["pair_j"]
    lab["i"] = np.where(swap, lab["pair_j"], lab["pair_i"])
    lab["j"] = np.where(swap, lab["pair_i"], lab["pair_j"])
    mirrored = lab["choice"].map({"A": "B", "B": "A"}).fillna(lab["choice"])
    lab["choice"] = np.where(swap, mirrored, lab["choice"])
    lab = lab.merge(items[["item_id", "dataset", "subset"]], on="item_id", how="left")
    return lab.drop(columns=["pair_i", "pair_j"])


def _refs(results: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    keep = ["run_id", "run", "run_kind", "mode", "item_id", "dataset", "subset", "margin", "split_votes",
            "inconsistent"]  # fmt: skip
    human = labels[["item_id", "i", "j", "annotator", "choice", "label_id"]].merge(
        results[[*keep, "winner", "ranking", "n_responses"]], on="item_id"
    )
    human = human.rename(columns={"choice": "ref_choice", "annotator": "rater"})
    human["reference"] = "human"
    human["model_choice"] = model_choice(human, human["i"], human["j"])
    gold = results[results["gold_choice"].notna()][[*keep, "pair_i", "pair_j", "gold_choice", "model_choice"]]
    gold = gold.rename(columns={"pair_i": "i", "pair_j": "j", "gold_choice": "ref_choice"})
    gold = gold.assign(rater=GOLD, reference=GOLD, label_id=pd.NA)
    cols = ["reference", "rater", "label_id", "ref_choice", "model_choice", "i", "j", *keep]
    refs = pd.concat([human[cols], gold[cols]], ignore_index=True)
    refs["decisive"] = refs["ref_choice"].isin(DECISIVE)
    refs["agree"] = refs["decisive"] & (refs["ref_choice"] == refs["model_choice"])
    return refs
