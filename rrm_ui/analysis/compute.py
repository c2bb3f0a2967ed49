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
from rrm_ui.analysis.metrics import grouped


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
    """Per run: items, judgments, tokens (prompt, completion, reasoning), generation seconds, truncation."""
    items = results.groupby("run").size().rename("items")
    g = judgments.groupby("run")
    out = pd.DataFrame({
        "judgments": g.size(),
        "prompt_tokens": g["prompt_tokens"].sum(),
        "completion_tokens": g["completion_tokens"].sum(),
        "reasoning_tokens": g["reasoning_tokens"].sum(),
        "generation_s": g["latency_s"].sum(),
        "truncated": g["status"].apply(lambda s: int((s == "truncated").sum())),
        "no_verdict": g["verdict"].apply(lambda s: int(s.isna().sum())),
        "backend": g["backend"].first(),
        "compute": g["mode"].first(),
    })  # fmt: skip
    out = out.join(items, how="outer").fillna({"judgments": 0, "items": 0}).reset_index(names="run")
    out["truncation_rate"] = out["truncated"] / out["judgments"].where(out["judgments"] > 0)
    out["tokens_per_item"] = out["completion_tokens"] / out["items"].where(out["items"] > 0)
    return out


def sample_references(judgments: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Each sample beside each decisive reference on its pair: a row per (sample, reference)."""
    d = refs[refs["decisive"]][["run_id", "item_id", "i", "j", "ref_choice", "reference", "rater"]]
    return judgments.merge(d, on=["run_id", "item_id", "i", "j"])


def accuracy_by_length(samples: pd.DataFrame) -> pd.DataFrame:
    """Agreement of single samples with the references per reasoning-length bucket (tokens)."""
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
    g = grouped(merged["run"].astype(str) + "\x00" + merged["m"].astype(str), merged["prefix_choice"],
                merged["ref_choice"])  # fmt: skip
    key = g["group"].str.split("\x00", n=1, expand=True)
    out = pd.DataFrame({"run": key[0] if len(g) else [], "votes": key[1].astype(int) if len(g) else [],
                        "n": g["n"], "agreement": g["agreement"], "low": g["agreement_low"],
                        "high": g["agreement_high"]})  # fmt: skip
    return out.sort_values(["run", "votes"]).reset_index(drop=True)


def compute_vs_accuracy(side_by_side: pd.DataFrame) -> pd.DataFrame:
    """Per run: completion tokens per item and agreement (humans, else gold): fixed vs adaptive."""
    if side_by_side.empty:
        return pd.DataFrame(columns=["run", "compute", "tokens per item", "agreement", "reference"])
    s = side_by_side[side_by_side["kind"] == "judge"].copy()
    s["reference"] = np.where(s["agreement_humans"].notna(), "humans", "gold")
    s["agreement"] = s["agreement_humans"].fillna(s["agreement_gold"])
    return s[["run", "compute", "tokens per item", "agreement", "reference"]]
