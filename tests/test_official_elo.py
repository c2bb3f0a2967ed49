"""The RRM paper's Elo, beside rrm-ui's Bradley-Terry ranking (issue 15: official reproduction settings).

Source: ``RRM-evaluation/scripts/elo_accuracy_results.py`` of microsoft/LMOps at commit
af6bc85e3e669ad5ec371d074c767905869c862e, function ``calculate_elo_by_question``: for one question

    random.seed(0)                  # once, at import
    random.shuffle(matches)
    rivals_1.append(str(m["rival_1"])); rivals_2.append(str(m["rival_2"]))
    outcomes: Winner.X if winner == rival_1, Winner.Y if winner == rival_2, else Winner.Draw
    result = elo(rivals_1, rivals_2, outcomes)      # evalica's defaults
    top_model = result.scores.idxmax()

The test replays those lines for one question (the script's own global ``random`` seeded with 0) and
compares with :func:`rrm_ui.engine.tournament.official_elo` and with a real round robin's stored ratings.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from evalica import Winner, elo

from rrm_ui.domain import PairOutcome
from rrm_ui.engine.tournament import official_elo, round_robin

STRENGTH = [0.2, 0.9, 0.5, 0.7, 0.1]  # who beats whom below: the stronger, a tie when within 0.15


def _winner(i: int, j: int) -> int | None:
    if abs(STRENGTH[i] - STRENGTH[j]) < 0.15:
        return None
    return i if STRENGTH[i] > STRENGTH[j] else j


def _script(details: list[dict]) -> tuple[dict[str, float], int]:
    """The official lines for one question, as written there."""
    random.seed(0)
    matches = list(details)
    random.shuffle(matches)
    rivals_1, rivals_2, outcomes = [], [], []
    for m in matches:
        rivals_1.append(str(m["rival_1"]))
        rivals_2.append(str(m["rival_2"]))
        winner = m["winner"]
        if winner == m["rival_1"]:
            outcomes.append(Winner.X)
        elif winner == m["rival_2"]:
            outcomes.append(Winner.Y)
        else:
            outcomes.append(Winner.Draw)
    result = elo(rivals_1, rivals_2, outcomes)
    return result.scores.to_dict(), int(result.scores.idxmax())


def test_official_elo_is_the_papers_script_for_one_question() -> None:
    n = len(STRENGTH)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    details = [{"rival_1": i, "rival_2": j, "winner": _winner(i, j)} for i, j in pairs]
    results = [(i, j, 0.5 if _winner(i, j) is None else float(_winner(i, j) == i)) for i, j in pairs]
    expected, top = _script(details)
    ratings, got_top = official_elo(n, results)
    assert ratings == [pytest.approx(expected[str(c)]) for c in range(n)]
    assert got_top == top == 1  # the strongest
    assert official_elo(n, results, seed=1)[0] != ratings  # the order matters: a sequential rating


def test_a_round_robin_stores_the_papers_elo_beside_bradley_terry() -> None:
    n = len(STRENGTH)

    async def compare(i: int, j: int) -> PairOutcome:
        w = _winner(i, j)
        return PairOutcome(i=i, j=j, winner=w, votes={i: int(w == i), j: int(w == j)}, judgments=(), invalid_votes=0,
                           position_consistent=None, samples_spent=1, adaptive_reason=None)  # fmt: skip

    rr = asyncio.run(round_robin(n, compare))
    results = [(o.i, o.j, 0.5 if o.winner is None else float(o.winner == o.i)) for o in rr.outcomes]
    assert list(rr.official_elo) == official_elo(n, results)[0]
    assert rr.winner == max(range(n), key=lambda c: rr.official_elo[c]) == 1
