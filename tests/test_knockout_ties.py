"""A knockout never declares a winner through a bracket-order tiebreak (issue 13, item 2).

The real Judge, prompt and parser run over a scripted backend (tests/test_engine.py's double); the
verdict card and the ranking table are rendered from the result.
"""

from __future__ import annotations

import asyncio

from rrm_ui.domain import Item
from rrm_ui.engine.runner import judge_item
from rrm_ui.storage.repository import result_row
from rrm_ui.ui.render import ranking_table, verdict_card
from tests.test_engine import TRUNCATED, ScriptedBackend, make_judge, says

FOUR = Item("four", "Describe a cat.", ("A cat.", "A small cat purrs.", "Cat", "A cat is a small furry animal."))


def doomed_script(doomed: str):
    """Every judgment that shows ``doomed`` is cut off; otherwise the longer response wins."""

    def script(first: str, second: str, k: int) -> str:
        if doomed in (first, second):
            return TRUNCATED
        return says(1 if len(first) > len(second) else 2)

    return script


def test_a_candidate_whose_comparisons_all_fail_is_never_the_best():
    # issue 13: "four responses, every comparison of one of them truncated: that one is 'the best' for
    # some bracket seeds". Every candidate plays at least once, so every bracket holds a tied match.
    for doomed in range(4):
        for seed in range(12):
            backend = ScriptedBackend(doomed_script(FOUR.responses[doomed]))
            result = asyncio.run(judge_item(make_judge(backend, votes=2), FOUR, "knockout", bracket_seed=seed))
            assert result.winner is None, (doomed, seed, result.bracket)
            tied = [m for rnd in result.bracket for m in rnd if m["advanced_by_tiebreak"]]
            assert tied and all(m["winner"] is None and doomed in (m["i"], m["j"]) for m in tied)
            row = result_row(result)
            assert row["winner"] is None and row["decision"] in ("tie", "undecided")


def test_a_bracket_without_ties_still_has_its_winner():
    backend = ScriptedBackend(doomed_script("no such response"))
    result = asyncio.run(judge_item(make_judge(backend), FOUR, "knockout", bracket_seed=3))
    assert result.winner == 3  # the longest
    assert not any(m["advanced_by_tiebreak"] for rnd in result.bracket for m in rnd)


def test_verdict_card_and_ranking_show_the_tie():
    backend = ScriptedBackend(doomed_script(FOUR.responses[3]))
    result = asyncio.run(judge_item(make_judge(backend), FOUR, "knockout", bracket_seed=0))
    [tied, *_] = [m for rnd in result.bracket for m in rnd if m["advanced_by_tiebreak"]]
    card = verdict_card(result)
    assert 'data-winner="tie"' in card or 'data-winner="none"' in card
    expected = (f"Knockout: Response {tied['i'] + 1} vs Response {tied['j'] + 1} had no winner (a tie or no valid "
                f"verdict); Response {tied['advanced'] + 1} went on only by bracket order")  # fmt: skip
    assert expected in card
    table = ranking_table(result)
    assert "No winner: a match had no winner" in table
    assert f"no winner; Response {tied['advanced'] + 1} went on by bracket order" in table
