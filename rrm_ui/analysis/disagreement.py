"""Where the judge and the humans (or gold) disagree, where humans disagree among themselves,
and where the model disagrees with itself. Tables from :class:`~rrm_ui.analysis.frames.Frames`.

Every function takes frames already narrowed to the dashboard's scope and returns a small
DataFrame (one row per group) that a chart or a table shows as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rrm_ui.analysis.frames import DECISIVE, HUMAN_CHOICES, MODEL_CHOICES
from rrm_ui.analysis.metrics import (
    Estimate,
    agreement,
    cohen_kappa,
    confusion,
    grouped,
    krippendorff_alpha_nominal,
    pairwise,
)

GROUPS = {"overall": None, "data set": "dataset", "subset": "subset", "run": "run", "annotator": "rater"}


def headline(refs: pd.DataFrame) -> dict[str, Estimate]:
    """Agreement and kappa of the model with the decisive references in ``refs``."""
    d = refs[refs["decisive"]]
    return {
        "agreement": agreement(d["model_choice"], d["ref_choice"]),
        "kappa": cohen_kappa(d["model_choice"], d["ref_choice"]),
    }


def model_vs_reference(refs: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """Agreement (Wilson 95% interval) and Cohen's kappa (95% interval) per group, in one pass.

    Columns: group, references (all), decisive, agree, agreement, agreement_low, agreement_high,
    kappa, kappa_low, kappa_high. Groups with references but none decisive are listed with nan.
    """
    keys = pd.Series("all", index=refs.index, dtype=object) if by is None else refs[by].astype(str)
    decisive = refs["decisive"].to_numpy()
    g = grouped(keys[decisive], refs["model_choice"][decisive], refs["ref_choice"][decisive])
    counts = keys.value_counts().rename("references").rename_axis("group").reset_index()
    out = counts.merge(g.rename(columns={"n": "decisive"}), on="group", how="left")
    out[["decisive", "agree"]] = out[["decisive", "agree"]].fillna(0).astype(int)
    return out.sort_values("group").reset_index(drop=True)[_MVR_COLUMNS]


_MVR_COLUMNS = ["group", "references", "decisive", "agree", "agreement", "agreement_low", "agreement_high",
                "kappa", "kappa_low", "kappa_high"]  # fmt: skip


def confusion_matrix(refs: pd.DataFrame) -> pd.DataFrame:
    """Counts: rows the reference's choice (A / B / tie / both bad), columns the model's (A / B / none)."""
    return confusion(refs["ref_choice"], refs["model_choice"], HUMAN_CHOICES, MODEL_CHOICES)


def inter_annotator(labels: pd.DataFrame) -> tuple[pd.DataFrame, Estimate]:
    """Pairwise agreement and kappa per annotator pair, and Krippendorff's alpha of the group.

    A unit is one comparison (item, i, j); only humans' latest labels count (gold is not a rater
    here: it appears beside the model as a reference).
    """
    lab = labels.assign(unit=labels["item_id"].astype(str) + ":" + labels["i"].astype(str) + ":" +
                        labels["j"].astype(str))  # fmt: skip
    pairs = pairwise(lab, "unit", "annotator", "choice")
    alpha = krippendorff_alpha_nominal(lab["unit"], lab["choice"])
    return pairs, alpha


def flip_rate(results: pd.DataFrame, by: str = "run") -> pd.DataFrame:
    """Share of judged-in-both-orders results whose verdict changed with the order, per group."""
    both = results[results["position_consistent"].notna()]
    rows = []
    for key, g in both.groupby(by, sort=True):
        k, n = int(g["inconsistent"].sum()), len(g)
        rows.append({"group": key, "inconsistent": k, "judged_both_orders": n, "rate": k / n if n else np.nan})
    return pd.DataFrame(rows, columns=["group", "inconsistent", "judged_both_orders", "rate"])


def vote_splits(results: pd.DataFrame) -> pd.DataFrame:
    """Items per vote split (``6-2``: six votes for the leader, two for the other) and run."""
    r = results[results["split"].notna()]
    out = r.groupby(["run", "split"]).size().rename("items").reset_index()
    lead = out["split"].str.split("-", expand=True).astype(int) if len(out) else pd.DataFrame({0: [], 1: []})
    return out.assign(total=lead[0] + lead[1], lead=lead[0]).sort_values(
        ["run", "total", "lead"], ascending=[True, True, False]
    )


def agreement_by_margin(refs: pd.DataFrame) -> pd.DataFrame:
    """Agreement with the decisive references per vote margin (|votes_i - votes_j|) of the run."""
    d = refs[refs["decisive"] & refs["margin"].notna()]
    g = grouped(d["margin"].astype(int), d["model_choice"], d["ref_choice"])
    return pd.DataFrame({"margin": g["group"].astype(int), "n": g["n"], "agreement": g["agreement"],
                         "low": g["agreement_low"], "high": g["agreement_high"]})  # fmt: skip


def runs_side_by_side(results: pd.DataFrame, refs: pd.DataFrame, judgments: pd.DataFrame) -> pd.DataFrame:
    """One row per run: against humans and gold, flips, truncation, tokens spent per item."""
    if results.empty:
        return pd.DataFrame(columns=_SIDE_COLUMNS)
    g = results.groupby("run", sort=True)
    out = pd.DataFrame({
        "kind": g["run_kind"].first(), "compute": g["mode"].first(), "items": g.size(),
        "decided": (results["model_choice"] != "none").groupby(results["run"]).mean().map("{:.1%}".format),
    })  # fmt: skip
    for ref, name in (("human", "humans"), ("gold", "gold")):
        t = model_vs_reference(refs[refs["reference"] == ref], "run").set_index("group")
        t = t.reindex(out.index.astype(str))
        out[f"vs {name}"] = _fmt_rates(t)
        out[f"agreement_{name}"] = t["agreement"].to_numpy()
        if ref == "human":
            out["kappa vs humans"] = [f"{k:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(k) else "n/a" for k, lo, hi in
                                      t[["kappa", "kappa_low", "kappa_high"]].itertuples(index=False)]  # fmt: skip
    both = results[results["position_consistent"].notna()]
    out["flip rate"] = both.groupby("run")["inconsistent"].mean().reindex(out.index).round(3)
    jg = judgments.groupby("run")
    out["judgments"] = jg.size().reindex(out.index).fillna(0).astype(int)
    out["truncated"] = (judgments["status"] == "truncated").groupby(judgments["run"]).mean().reindex(out.index).round(3)
    out["tokens per item"] = (jg["completion_tokens"].sum().reindex(out.index).fillna(0) / out["items"]).round(1)
    return out.reset_index(names="run")[_SIDE_COLUMNS]


_SIDE_COLUMNS = [
    "run",
    "kind",
    "compute",
    "items",
    "decided",
    "vs humans",
    "kappa vs humans",
    "vs gold",
    "agreement_humans",
    "agreement_gold",
    "flip rate",
    "truncated",
    "judgments",
    "tokens per item",
]


def _fmt_rates(t: pd.DataFrame) -> list[str]:
    return [f"{a:.1%} [{lo:.1%}, {hi:.1%}] (n={n})" if pd.notna(a) else "n/a" for a, lo, hi, n in
            t[["agreement", "agreement_low", "agreement_high", "decisive"]].itertuples(index=False)]  # fmt: skip


__all__ = [
    "DECISIVE",
    "GROUPS",
    "agreement_by_margin",
    "confusion_matrix",
    "flip_rate",
    "headline",
    "inter_annotator",
    "model_vs_reference",
    "runs_side_by_side",
    "vote_splits",
]
