"""Agreement between annotators per criterion (per-criterion labels, docs/review.md). Pure pandas.

For each criterion: every comparison (item, pair) two or more annotators labelled on it, and over
every two annotators on such a comparison, the share that chose the same (A, B or tie).
"""

from __future__ import annotations

from itertools import combinations

import pandas as pd

COLUMNS = ["criterion", "comparisons", "rater_pairs", "agree", "agreement"]


def criterion_agreement(labels: pd.DataFrame, criteria: tuple[str, ...] = ()) -> pd.DataFrame:
    """``labels``: the latest criterion labels (``annotator``, ``item_id``, ``pair_i``, ``pair_j``,
    ``criterion``, ``choice``). One row per criterion (those of ``criteria`` first, in order, even
    without labels), with the comparisons that have two or more annotators, the pairs of annotators
    on them, how many of those chose the same, and that share (None with no pair)."""
    counts: dict[str, list[int]] = {c: [0, 0, 0] for c in criteria}
    if not labels.empty:
        mirrored = labels["pair_i"] > labels["pair_j"]
        i = labels["pair_i"].where(~mirrored, labels["pair_j"])
        j = labels["pair_j"].where(~mirrored, labels["pair_i"])
        choice = labels["choice"].where(~mirrored, labels["choice"].map({"A": "B", "B": "A"}).fillna(labels["choice"]))
        frame = labels.assign(i=i, j=j, choice=choice)
        if "id" in frame:  # a pair labelled in both orders: the annotator's newest label counts
            frame = frame.sort_values("id")
        for (criterion, _item, _i, _j), group in frame.groupby(["criterion", "item_id", "i", "j"], sort=True):
            picks = list(group.drop_duplicates("annotator", keep="last")["choice"])
            if len(picks) < 2:
                continue
            row = counts.setdefault(str(criterion), [0, 0, 0])
            row[0] += 1
            for a, b in combinations(picks, 2):
                row[1] += 1
                row[2] += a == b
    rows = [{"criterion": c, "comparisons": n, "rater_pairs": p, "agree": a, "agreement": a / p if p else None}
            for c, (n, p, a) in counts.items()]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)
