"""Which references a figure is scored against: every human, the human majority, gold, the reviewers'
adjudicated labels, or one annotator.

``refs`` is :attr:`~rrm_ui.analysis.frames.Frames.refs` (one row per reference, run and
comparison); the dashboards and the explorer's confusion-cell filter choose from it here.
"""

from __future__ import annotations

import pandas as pd

from rrm_ui.analysis.frames import ADJUDICATED, GOLD, MAJORITY

HUMANS = "humans"


def select_reference(refs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The rows of ``refs`` for ``reference``: ``humans`` (every annotator's latest label), ``majority``
    (the human majority per comparison), ``gold``, ``adjudicated`` (a reviewer's final label per
    comparison), or one annotator's name."""
    if reference == HUMANS:
        return refs[refs["reference"] == "human"]
    if reference in (GOLD, MAJORITY, ADJUDICATED):
        return refs[refs["reference"] == reference]
    return refs[(refs["reference"] == "human") & (refs["rater"] == reference)]


def reference_names(annotators: list[str]) -> list[str]:
    """Every reference a scope can choose, in menu order."""
    fixed = (HUMANS, MAJORITY, GOLD, ADJUDICATED)
    return [*fixed, *(a for a in annotators if a not in fixed)]
