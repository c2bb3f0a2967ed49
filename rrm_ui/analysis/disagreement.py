"""Where the judge and the humans (or gold) disagree, where humans disagree among themselves,
and where the model disagrees with itself. Tables from :class:`~rrm_ui.analysis.frames.Frames`.

Every function takes frames already narrowed to the dashboard's scope and returns a small
DataFrame (one row per group) that a chart or a table shows as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rrm_ui.analysis.frames import ADJUDICATED, DECISIVE, GOLD, HUMAN_CHOICES, MAJORITY, MODEL_CHOICES, NO_MAJORITY
from rrm_ui.analysis.metrics import (
    Estimate,
    agreement,
    cohen_kappa,
    confusion,
    grouped,
    grouped_codes,
    krippendorff_alpha_nominal,
    pairwise,
)
from rrm_ui.analysis.references import HUMANS

# "guideline": the guideline version a human label was made under (docs/review.md), "(none)" without one
GROUPS = {"overall": None, "data set": "dataset", "subset": "subset", "run": "run", "annotator": "rater",
          "guideline": "guideline"}  # fmt: skip


def headline(refs: pd.DataFrame) -> dict[str, Estimate]:
    """Agreement and kappa of the model with the decisive references in ``refs``."""
    d = refs[refs["decisive"]]
    return {
        "agreement": agreement(d["model_choice"], d["ref_choice"]),
        "kappa": cohen_kappa(d["model_choice"], d["ref_choice"]),
    }


def three_way(refs: pd.DataFrame) -> dict[str, Estimate]:
    """Three-way agreement and kappa: references A / B / tie on compared pairs against the model's
    three-way choice (``tie``: an even split of valid votes or an external judge's tie; ``none``: no
    valid verdict, which agrees with nothing)."""
    d = refs[refs["three_way"]]
    return {
        "agreement": agreement(d["model_choice3"], d["ref_choice"]),
        "kappa": cohen_kappa(d["model_choice3"], d["ref_choice"]),
    }


def by_reference(refs: pd.DataFrame, references: list[str]) -> pd.DataFrame:
    """Agreement and kappa (decisive and three-way) per reference and run, and over all runs (run
    ``(all)``, listed for every reference even without data). Columns: reference, run, references,
    not_compared, no_majority, decisive, agree, agreement(_low/_high), kappa(_low/_high), three_way,
    agree3, agreement3(_low/_high), kappa3(_low/_high).

    One vectorised pass: every row of ``refs`` is counted under its reference (``humans`` and its
    annotator for a human label, ``majority``, ``gold``), for its run and for ``(all)``, as integer
    group keys, and the choices as integer codes, so 30 annotators cost no more than one.
    """
    kind = refs["reference"].to_numpy(dtype=object)
    ref_at = {ref: k for k, ref in enumerate(references)}
    run_codes, run_names = pd.factorize(refs["run"], sort=True)
    if (run_codes < 0).any():  # a missing run name: read as text, like the tables that show it
        run_codes, run_names = pd.factorize(refs["run"].astype(str), sort=True)
    width = len(run_names) + 1  # the last run code is "(all)"
    rows: list[np.ndarray] = []
    ref_codes: list[np.ndarray] = []
    for name, mask in ((HUMANS, kind == "human"), (MAJORITY, kind == MAJORITY), (GOLD, kind == GOLD),
                       (ADJUDICATED, kind == ADJUDICATED)):  # fmt: skip
        if name in ref_at:
            idx = np.flatnonzero(mask)
            rows.append(idx)
            ref_codes.append(np.full(len(idx), ref_at[name]))
    human = np.flatnonzero(kind == "human")
    own = refs["rater"].iloc[human].map(ref_at).to_numpy(dtype=float)  # an annotator as the reference
    named = ~np.isnan(own)
    rows.append(human[named])
    ref_codes.append(own[named].astype(int))
    idx = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
    ref_code = np.concatenate(ref_codes).astype(int) if ref_codes else np.zeros(0, dtype=int)
    idx = np.concatenate([idx, idx])
    run_code = np.concatenate([run_codes[idx[: len(idx) // 2]], np.full(len(idx) // 2, width - 1)])
    key = np.concatenate([ref_code, ref_code]) * width + run_code
    n_keys = len(references) * width

    def count(values: np.ndarray) -> np.ndarray:
        return np.bincount(key, weights=values[idx].astype(float), minlength=n_keys).astype(int)

    ref_choice = refs["ref_choice"].to_numpy(dtype=object)
    table = pd.DataFrame({
        "references": np.bincount(key, minlength=n_keys),
        "not_compared": count(~refs["compared"].to_numpy(dtype=bool)),
        "no_majority": count(ref_choice == NO_MAJORITY),
        "agree": count(refs["agree"].to_numpy(dtype=bool)),
        "agree3": count(refs["agree3"].to_numpy(dtype=bool)),
    })  # fmt: skip
    cats = pd.Index([*HUMAN_CHOICES, "none"])
    ref_c = _codes(cats, ref_choice)[idx]
    for name, mask, model, suffix in (("decisive", "decisive", "model_choice", ""),
                                      ("three_way", "three_way", "model_choice3", "3")):  # fmt: skip
        model_c = _codes(cats, refs[model].to_numpy(dtype=object))[idx]
        keep = refs[mask].to_numpy(dtype=bool)[idx] & ~np.isnan(model_c) & ~np.isnan(ref_c)
        g = grouped_codes(key[keep], model_c[keep].astype(int), ref_c[keep].astype(int), n_keys, len(cats))
        table[name] = g["n"]
        for col in ("agreement", "agreement_low", "agreement_high", "kappa", "kappa_low", "kappa_high"):
            base, _, tail = col.partition("_")
            table[f"{base}{suffix}{'_' + tail if tail else ''}"] = g[col]
    table["reference"] = [references[k // width] for k in range(n_keys)]
    names = [*map(str, run_names), ALL_RUNS]
    table["run"] = [names[k % width] for k in range(n_keys)]
    table = table[(table["references"] > 0) | (table["run"] == ALL_RUNS)]
    table = table.assign(_ref=[k // width for k in table.index], _runs=table["run"] != ALL_RUNS)
    return table.sort_values(["_ref", "_runs", "run"], kind="stable").reset_index(drop=True)[_BY_REF_COLUMNS]


def _codes(cats: pd.Index, values: np.ndarray) -> np.ndarray:
    """Integer codes of ``values`` in ``cats`` as floats, nan for a value not listed (missing)."""
    c = cats.get_indexer(values).astype(float)
    c[c < 0] = np.nan
    return c


ALL_RUNS = "(all)"
_BY_REF_COLUMNS = ["reference", "run", "references", "not_compared", "no_majority", "decisive", "agree", "agreement",
                   "agreement_low", "agreement_high", "kappa", "kappa_low", "kappa_high", "three_way", "agree3",
                   "agreement3", "agreement3_low", "agreement3_high", "kappa3", "kappa3_low",
                   "kappa3_high"]  # fmt: skip


def judge_vs_judge(results: pd.DataFrame) -> pd.DataFrame:
    """Agreement and Cohen's kappa between every two runs over the items both judged.

    Each run's choice on an item is the response it found best (``best``: its winner; ``none`` when
    it has no winner): for a pair item that is A / B / none. Columns: run_1, run_2 (``run_1 < run_2``),
    n (shared items), agree, agreement(_low/_high), kappa(_low/_high), both_decided (shared items where
    both have a winner), agree_decided. One self-merge on integer codes.
    """
    cols = ["run_1", "run_2", "n", "agree", "agreement", "agreement_low", "agreement_high", "kappa", "kappa_low",
            "kappa_high", "both_decided", "agree_decided"]  # fmt: skip
    run_codes, runs = pd.factorize(results["run"].astype(str), sort=True)
    choice_codes, choices = pd.factorize(results["best"])
    lab = pd.DataFrame({"item": results["item_id"].to_numpy(), "r": run_codes, "c": choice_codes})
    lab = lab.drop_duplicates(["item", "r"], keep="last")
    m = lab.merge(lab, on="item", suffixes=("1", "2"))
    m = m[m["r1"] < m["r2"]]
    if m.empty:
        return pd.DataFrame(columns=cols)
    width = len(runs)
    key = (m["r1"] * width + m["r2"]).to_numpy()
    g = grouped(pd.Series(key), pd.Series(m["c1"].to_numpy()), pd.Series(m["c2"].to_numpy()))
    none = choices.get_loc("none") if "none" in choices else -1
    decided = (m["c1"] != none).to_numpy() & (m["c2"] != none).to_numpy()
    same = (m["c1"] == m["c2"]).to_numpy()
    keys = g["group"].to_numpy(dtype=np.int64)
    both = np.bincount(key, weights=decided, minlength=width * width)[keys]
    agree_decided = np.bincount(key, weights=decided & same, minlength=width * width)[keys]
    out = g.drop(columns=["group"]).assign(run_1=runs[keys // width], run_2=runs[keys % width])
    out["both_decided"], out["agree_decided"] = both.astype(int), agree_decided.astype(int)
    return out[cols].reset_index(drop=True)


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
    return annotator_pairs(labels), annotator_alpha(labels)


def annotator_pairs(labels: pd.DataFrame) -> pd.DataFrame:
    """Agreement and kappa per annotator pair over the comparisons both labelled (see inter_annotator)."""
    lab = labels.assign(unit=_units(labels))
    return pairwise(lab, "unit", "annotator", "choice")


def annotator_alpha(labels: pd.DataFrame) -> Estimate:
    """Krippendorff's alpha (nominal) of the annotators over comparisons (see inter_annotator)."""
    return krippendorff_alpha_nominal(_units(labels), labels["choice"])


def _units(labels: pd.DataFrame) -> pd.Series:
    """One integer per comparison (item, i, j)."""
    if labels.empty:
        return pd.Series([], dtype=np.int64, index=labels.index)
    item, i, j = (labels[c].to_numpy(dtype=np.int64) for c in ("item_id", "i", "j"))
    radix = int(max(i.max(), j.max())) + 1  # responses per item, at most
    codes, _ = pd.factorize((item * radix + i) * radix + j)
    return pd.Series(codes, index=labels.index)


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


def runs_side_by_side(results: pd.DataFrame, refs: pd.DataFrame, judgments: pd.DataFrame,
                      judged: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per run: against humans and gold, flips, truncation, tokens spent per item.

    ``judged`` is :func:`runs_judged` of the same results and judgments when already computed (it does
    not change with the labels)."""
    if results.empty:
        return pd.DataFrame(columns=_SIDE_COLUMNS)
    out = (runs_judged(results, judgments) if judged is None else judged).copy()
    kind = refs["reference"].to_numpy(dtype=object)
    # only the columns read below: a row mask over every column of the references copies them all
    slim = refs[["run", "decisive", "model_choice", "ref_choice", "agree", "error_score"]]
    for ref, name in (("human", "humans"), ("gold", "gold")):
        t = model_vs_reference(slim[kind == ref], "run").set_index("group")
        t = t.reindex(out.index.astype(str))
        out[f"vs {name}"] = _fmt_rates(t)
        out[f"agreement_{name}"] = t["agreement"].to_numpy()
        if ref == "human":
            out["kappa vs humans"] = [f"{k:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(k) else "n/a" for k, lo, hi in
                                      t[["kappa", "kappa_low", "kappa_high"]].itertuples(index=False)]  # fmt: skip
    score, n = paper_score(slim[kind == GOLD])
    out["vs gold, paper's scoring"] = [f"{score[r]:.1%} (n={n[r]})" if n.get(r) else "n/a" for r in out.index]
    out["paper_score_gold"] = [score.get(r, np.nan) for r in out.index]
    return out.reset_index(names="run")[_SIDE_COLUMNS]


def paper_score(gold: pd.DataFrame) -> tuple[dict[str, float], dict[str, int]]:
    """Accuracy against gold per run as the run's format's paper scores it (RewardBench: a pair the judge
    reached no verdict on counts 0.5; RM-R1: 0; FastChat: left out; ``frames.error_score``): over
    the compared pairs with a decisive gold label, 1 when the model's choice is gold's, the error
    score when it chose nothing, 0 otherwise. (score, pairs scored) per run."""
    d = gold[gold["decisive"].to_numpy(dtype=bool)]
    none = (d["model_choice"] == "none").to_numpy()
    err = d["error_score"].to_numpy(dtype=float)
    points = np.where(d["agree"].to_numpy(dtype=bool), 1.0, np.where(none, err, 0.0))
    scored = ~np.isnan(points)
    t = pd.DataFrame({"run": d["run"].to_numpy()[scored], "p": points[scored]}).groupby("run")["p"]
    return t.mean().to_dict(), t.size().to_dict()


def runs_judged(results: pd.DataFrame, judgments: pd.DataFrame, totals: pd.DataFrame | None = None) -> pd.DataFrame:
    """The part of :func:`runs_side_by_side` that reads no reference, indexed by run: kind, compute,
    items, decided, flip rate, and from :func:`~rrm_ui.analysis.compute.run_totals` (``totals`` when already
    computed) judgments, truncated (a rate) and tokens per item."""
    from rrm_ui.analysis.compute import run_totals

    g = results.groupby("run", sort=True)
    out = pd.DataFrame({
        "kind": g["run_kind"].first(), "compute": g["mode"].first(), "items": g.size(),
        "decided": (results["model_choice"] != "none").groupby(results["run"]).mean().map("{:.1%}".format),
    })  # fmt: skip
    both = results[results["position_consistent"].notna()]
    out["flip rate"] = both.groupby("run")["inconsistent"].mean().reindex(out.index).round(3)
    per_run = (run_totals(judgments, results) if totals is None else totals).set_index("run")
    per_run = per_run.reindex(out.index.astype(str))
    out["judgments"] = per_run["judgments"].fillna(0).astype(int).to_numpy()
    out["truncated"] = per_run["truncation_rate"].round(3).to_numpy()
    out["tokens per item"] = (per_run["completion_tokens"].fillna(0).to_numpy() / out["items"].to_numpy()).round(1)
    return out


_SIDE_COLUMNS = [
    "run",
    "kind",
    "compute",
    "items",
    "decided",
    "vs humans",
    "kappa vs humans",
    "vs gold",
    "vs gold, paper's scoring",
    "agreement_humans",
    "paper_score_gold",
    "agreement_gold",
    "flip rate",
    "truncated",
    "judgments",
    "tokens per item",
]


def _fmt_rates(t: pd.DataFrame) -> list[str]:
    # a run without references is a reindexed nan row, which makes the column float: print counts as ints
    return [f"{a:.1%} [{lo:.1%}, {hi:.1%}] (n={int(n)})" if pd.notna(a) else "n/a" for a, lo, hi, n in
            t[["agreement", "agreement_low", "agreement_high", "decisive"]].itertuples(index=False)]  # fmt: skip


__all__ = [
    "ALL_RUNS",
    "DECISIVE",
    "by_reference",
    "judge_vs_judge",
    "three_way",
    "GROUPS",
    "agreement_by_margin",
    "confusion_matrix",
    "flip_rate",
    "headline",
    "annotator_alpha",
    "annotator_pairs",
    "inter_annotator",
    "model_vs_reference",
    "paper_score",
    "runs_judged",
    "runs_side_by_side",
    "vote_splits",
]
