"""What judging costs, and what more compute buys: tables from :class:`~rrm_ui.analysis.frames.Frames`.

- token, latency and throughput distributions are binned here (the browser gets bars, not
  100,000 points);
- accuracy against compute compares each *sample's* own verdict with the references (by its
  reasoning length), and majority votes of the first ``m`` stored samples of a comparison (the
  number of votes a cheaper run would have had), alternating presentation orders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rrm_ui.analysis.frames import bucket_labels
from rrm_ui.analysis.metrics import grouped, wilson


def token_histogram(judgments: pd.DataFrame) -> pd.DataFrame:
    """Judgments per reasoning-length bucket and verdict status: bucket, status, judgments."""
    counts = judgments.groupby(["length_bucket", "status"], observed=True).size()
    out = counts.rename("judgments").reset_index()
    out["bucket"] = out["length_bucket"].astype(str)
    return out[out["judgments"] > 0][["bucket", "status", "judgments"]].reset_index(drop=True)


def distribution(judgments: pd.DataFrame, column: str, by: str) -> pd.DataFrame:
    """count, mean, median, p90, p99 and max of ``column`` per group."""
    g = judgments[judgments[column].notna()].groupby(by, sort=True, observed=True)[column]
    out = g.agg(["count", "mean", "median", "max"])
    out["p90"] = g.quantile(0.9)
    out["p99"] = g.quantile(0.99)
    return out.reset_index().rename(columns={by: "group"})[["group", "count", "mean", "median", "p90", "p99", "max"]]


def run_totals(judgments: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per run: items, judgments, tokens (prompt, completion, reasoning), generation seconds, truncation,
    forced closes (budget forcing), judgments without a verdict.

    Counted per integer run id with ``np.bincount`` (a groupby on the names' strings was most of the time at
    a million judgments), then summed per run name, as the tables show runs (two data sets' runs may share
    one); ``backend`` and ``compute`` are the first judgment's of the name."""
    items = results.groupby("run").size().rename("items")
    rid = judgments["run_id"].to_numpy(dtype=np.int64)
    ids, at = np.unique(rid, return_inverse=True)
    first = np.unique(at, return_index=True)[1]

    def total(values: pd.Series | np.ndarray) -> np.ndarray:
        return np.bincount(at, weights=np.asarray(values, dtype=float), minlength=len(ids))

    per_id = pd.DataFrame({
        "judgments": np.bincount(at, minlength=len(ids)),
        "prompt_tokens": total(judgments["prompt_tokens"].fillna(0)),
        "completion_tokens": total(judgments["completion_tokens"].fillna(0)),
        "reasoning_tokens": total(judgments["reasoning_tokens"].fillna(0)),
        "generation_s": total(judgments["latency_s"].fillna(0)),
        "truncated": total(judgments["status"] == "truncated"),
        # budget forcing closed the thinking (the verdict kept): apart from truncations and natural closes
        "forced": total(judgments["forced_close"].fillna(False).astype(bool)),  # analysis.frames._judgments
        "no_verdict": total(judgments["verdict"].isna()),
    }, index=pd.Index(judgments["run"].iloc[first].astype(str).to_numpy(), name="run"))  # fmt: skip
    out = per_id.groupby(level=0).sum()
    firsts = judgments.iloc[first].drop_duplicates("run").set_index("run")
    out["backend"] = firsts["backend"].reindex(out.index)
    out["compute"] = firsts["mode"].reindex(out.index)
    counts = ["judgments", "truncated", "forced", "no_verdict"]
    out[counts] = out[counts].astype(int)
    items.index = items.index.astype(str)
    out = out.join(items, how="outer").fillna({"judgments": 0, "items": 0, "forced": 0}).reset_index(names="run")
    out["truncation_rate"] = out["truncated"] / out["judgments"].where(out["judgments"] > 0)
    out["tokens_per_item"] = out["completion_tokens"] / out["items"].where(out["items"] > 0)
    return out


def sample_references(judgments: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Each sample beside each decisive reference on its pair: a row per (sample, reference), with the
    comparison's keys, the sample's ``length_bucket``, ``choice`` and ``status`` (only what the length chart
    reads: at a million judgments every column of every sample beside its references would be gigabytes),
    and ``ref_choice``, ``reference`` and ``rater``."""
    keys = ["run_id", "item_id", "i", "j"]
    d = refs[refs["decisive"]][[*keys, "ref_choice", "reference", "rater"]]
    return judgments[[*keys, "length_bucket", "choice", "status"]].merge(d, on=keys)


def accuracy_by_length(judgments: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Agreement of single samples with the references per reasoning-length bucket (tokens)."""
    samples = sample_references(judgments, refs)
    g = grouped(samples["length_bucket"].astype(str), samples["choice"], samples["ref_choice"])
    trunc = (samples["status"] == "truncated").groupby(samples["length_bucket"].astype(str)).mean()
    out = pd.DataFrame({"bucket": g["group"], "n": g["n"], "agreement": g["agreement"], "low": g["agreement_low"],
                        "high": g["agreement_high"], "truncated": g["group"].map(trunc).to_numpy()})  # fmt: skip
    order = {b: k for k, b in enumerate(bucket_labels())}
    return out.sort_values("bucket", key=lambda s: s.map(order)).reset_index(drop=True)


def accuracy_by_votes(judgments: pd.DataFrame, refs: pd.DataFrame, max_votes: int = 16) -> pd.DataFrame:
    """Agreement of the majority of the first ``m`` samples of each comparison, for m = 1, 2, ...

    Samples are taken in the order a run with fewer votes would have drawn them: sample 0 of
    each presentation order, then sample 1 of each, and so on. A comparison counts at ``m``
    only if it has at least ``m`` samples; an even split is ``none`` (a disagreement).
    Columns: run, votes, n, agreement, low, high.
    """
    j = judgments[["run", "run_id", "item_id", "i", "j", "a", "sample", "choice"]].copy()
    j["swapped"] = (j["a"] != j["i"]).astype(int)
    j = j.sort_values(["run_id", "item_id", "i", "j", "sample", "swapped"])
    j["vote"] = np.select([j["choice"] == "A", j["choice"] == "B"], [1, -1], 0)
    keys = ["run_id", "item_id", "i", "j"]
    j["m"] = j.groupby(keys).cumcount() + 1
    j["lead"] = j.groupby(keys)["vote"].cumsum()
    j = j[j["m"] <= max_votes]
    j["prefix_choice"] = np.select([j["lead"] > 0, j["lead"] < 0], ["A", "B"], "none")
    d = refs[refs["decisive"]][[*keys, "ref_choice"]]
    merged = j.merge(d, on=keys)
    # the group is (run, m) as one integer: the run's code in name order, then m (a string key per row
    # took more memory than the rows themselves)
    run_codes, run_names = pd.factorize(merged["run"].astype(str), sort=True)
    g = grouped(pd.Series(run_codes * (max_votes + 1) + merged["m"].to_numpy()), merged["prefix_choice"],
                merged["ref_choice"])  # fmt: skip
    group = g["group"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({"run": np.asarray(run_names, dtype=object)[group // (max_votes + 1)],
                        "votes": group % (max_votes + 1), "n": g["n"], "agreement": g["agreement"],
                        "low": g["agreement_low"], "high": g["agreement_high"]})  # fmt: skip
    return out.sort_values(["run", "votes"]).reset_index(drop=True)


def compute_vs_accuracy(side_by_side: pd.DataFrame) -> pd.DataFrame:
    """Per run: completion tokens per item and agreement (humans, else gold): fixed vs adaptive."""
    if side_by_side.empty:
        return pd.DataFrame(columns=["run", "compute", "tokens per item", "agreement", "reference"])
    s = side_by_side[side_by_side["kind"] == "judge"].copy()
    s["reference"] = np.where(s["agreement_humans"].notna(), "humans", "gold")
    s["agreement"] = s["agreement_humans"].fillna(s["agreement_gold"])
    return s[["run", "compute", "tokens per item", "agreement", "reference"]]


AUDIT_COLUMNS = [
    "run", "reference_run", "stopping", "items", "tokens_per_item", "reference_tokens_per_item", "tokens_saved",
    "same_choice", "labels", "decisive", "agreement", "reference_agreement", "agreement_lost",
]  # fmt: skip


def samples_per_pair(compute: dict | None) -> int:
    """A fixed run's samples per comparison: votes, times two with both orders."""
    c = compute or {}
    return int(c.get("votes", 1)) * (2 if c.get("swap") else 1)


def _orders(compute: dict | None) -> tuple[bool, str]:
    """How a run presents a pair: both orders, or one (as listed or shuffled per vote)."""
    c = compute or {}
    return bool(c.get("swap")), str(c.get("order", "given"))


def adaptive_audit(runs: pd.DataFrame, results: pd.DataFrame, judgments: pd.DataFrame, refs: pd.DataFrame,
                   gold: pd.DataFrame | None = None, labels: str = "") -> pd.DataFrame:  # fmt: skip
    """What each adaptive run saved and what it lost, against a full-budget reference run on the same items.

    The reference of an adaptive run is the fixed (non-adaptive) judge run of the same data set, judge
    format and model that presents the pairs as it does (both orders, or one as listed or shuffled; a run
    that does not, only when none does) with the most samples per comparison (votes x orders; the newest
    among equals).
    On the items both runs judged: completion tokens per item of each (every try, retried ones too: they
    were spent) and ``tokens_saved`` (1 - adaptive / reference); ``same_choice``, the share of items on which
    the adaptive run made the reference run's choice (an undecided item is the choice "none"); and against
    the dashboard's reference labels (``refs``: humans, majority or gold, decisive ones only), each run's
    agreement and ``agreement_lost`` (reference minus adaptive, in points of agreement). Where ``refs``
    has no decisive label on the shared items and ``gold`` is given, the gold labels are used instead (as
    the fixed-vs-adaptive chart and the sweep chart fall back); ``labels`` names the labels used (``labels``
    or "gold"). Columns :data:`AUDIT_COLUMNS`; no row for an adaptive run without a reference run or shared
    items.
    """
    judge = runs[runs["run_kind"] == "judge"]
    compute = judge["compute"].map(lambda c: c if isinstance(c, dict) else {})
    adaptive = judge[compute.map(lambda c: bool(c.get("adaptive")))]
    fixed = judge[~compute.map(lambda c: bool(c.get("adaptive")))]
    rows = []
    for a in adaptive.itertuples(index=False):
        same = fixed[(fixed["dataset_id"] == a.dataset_id) & (fixed["template"] == a.template)
                     & (fixed["model"] == a.model)]  # fmt: skip
        if same.empty:
            continue
        mine = a.compute if isinstance(a.compute, dict) else {}
        protocol = same["compute"].map(lambda c, m=mine: _orders(c) == _orders(m))
        rank = same.assign(protocol=protocol, spent=same["compute"].map(samples_per_pair))
        rank = rank.sort_values(["protocol", "spent", "run_id"])
        ref = rank.iloc[-1]
        ra = results[results["run_id"] == a.run_id].set_index("item_id")["model_choice"]
        rr = results[results["run_id"] == ref["run_id"]].set_index("item_id")["model_choice"]
        shared = ra.index.intersection(rr.index)
        if not len(shared):
            continue
        on = judgments[judgments["item_id"].isin(shared)]
        tokens = on.groupby("run_id")["completion_tokens"].sum()
        ta, tr = float(tokens.get(a.run_id, 0.0)), float(tokens.get(ref["run_id"], 0.0))
        decisive, used = refs[refs["decisive"] & refs["item_id"].isin(shared)], labels
        if decisive.empty and gold is not None:
            decisive, used = gold[gold["decisive"] & gold["item_id"].isin(shared)], "gold"

        def agreement(run_id: int, d: pd.DataFrame = decisive) -> tuple[float, int]:
            mine = d[d["run_id"] == run_id]
            est = wilson(int((mine["model_choice"] == mine["ref_choice"]).sum()), len(mine))
            return est.value, len(mine)

        acc_a, n_a = agreement(a.run_id)
        acc_r, _ = agreement(ref["run_id"])
        rows.append({
            "run": a.run, "reference_run": ref["run"], "stopping": (a.compute or {}).get("stopping", "margin"),
            "items": len(shared), "tokens_per_item": ta / len(shared), "reference_tokens_per_item": tr / len(shared),
            "tokens_saved": 1 - ta / tr if tr > 0 else np.nan,
            "same_choice": float((ra.loc[shared] == rr.loc[shared]).mean()), "labels": used, "decisive": n_a,
            "agreement": acc_a, "reference_agreement": acc_r, "agreement_lost": acc_r - acc_a,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=AUDIT_COLUMNS)
