"""A human overturns a knockout match (issue 17): the bracket replays from it with the human's decisions
(adjudications of the match's pair), a match the model never played waits for a human, and the export
writes the corrected outcomes as preference pairs. A real knockout (engine.tournament) over a scripted
comparison; real SQLite and PostgreSQL; the expected bracket worked out by hand from the entry order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, Item, ItemResult, PairOutcome
from rrm_ui.engine.replay import PENDING, entry_order, replay_knockout
from rrm_ui.engine.tournament import knockout
from rrm_ui.services import open_repository, review
from rrm_ui.services.exports import ExportFilters, export

RESPONSES = ("best answer", "second answer", "third answer", "worst answer")  # the model prefers the lower index


async def _lower_wins(i: int, j: int) -> PairOutcome:
    w = min(i, j)
    return PairOutcome(i=i, j=j, winner=w, votes={w: 2, max(i, j): 0}, invalid_votes=0, position_consistent=True,
                       samples_spent=2, adaptive_reason=None, judgments=())  # fmt: skip


@pytest.fixture
def world(db_url: str):  # noqa: ANN201
    repo = open_repository(Settings(database_url=db_url))
    ds_id, item_id = repo.add_item("lists", Item("q1", "Which is best?", RESPONSES), fmt="test", source="test")
    ko = asyncio.run(knockout(4, _lower_wins, seed=0))
    run, _ = repo.get_or_create_run(ds_id, "ko", backend="test", model="m", template="rrm", template_version="1",
                                    strategy="knockout", sampling={}, compute={})  # fmt: skip
    bracket = tuple(tuple(m.to_dict() for m in rnd) for rnd in ko.rounds)
    repo.save_result(run.id, item_id, ItemResult(id="q1", strategy="knockout", winner=ko.winner,
                     ranking=ko.ranking, pairs=ko.outcomes, template="rrm", template_version="1", model="m",
                     backend="test", bracket=bracket))  # fmt: skip
    return repo, ds_id, item_id, run.id, ko


def test_entry_order_and_replay_without_humans_give_the_knockout(world) -> None:  # noqa: ANN001
    repo, _ds, item, run, ko = world
    assert entry_order(repo.latest_result_row(run, item)["bracket"]) == ko.entry_order
    b = review.review_bracket(repo, item, run)
    assert b.model.champion == ko.champion == 0 and b.model.ranking == ko.ranking
    assert b.corrected.ranking == ko.ranking and b.overturned == ()
    assert [[(m.match.i, m.match.j, m.match.winner, m.source) for m in rnd] for rnd in b.model.rounds] == [
        [(m.i, m.j, m.winner, "model") for m in rnd] for rnd in ko.rounds]  # fmt: skip


def test_a_human_overturns_a_first_round_match_and_decides_the_new_final(world, tmp_path: Path) -> None:  # noqa: ANN001
    repo, ds, item, run, ko = world
    o = ko.entry_order
    first, second = (o[0], o[1]), (o[2], o[3])  # round 1, as knockout pairs the entry order
    champion_side = first if 0 in first else second
    other_side = second if champion_side is first else first
    loser = max(champion_side)  # 0 beat it in round 1
    runner_up = min(other_side)  # won the other match, lost the final to 0
    # the human says 0 lost its first match
    a, b = sorted(champion_side)
    review.adjudicate(repo, "rev", item, (a, b), Choice.B if loser == b else Choice.A, "the model missed an error")
    got = review.review_bracket(repo, item, run)
    assert got.overturned == ((a, b),)
    assert got.corrected.pending == ((loser, runner_up) if o.index(loser) < o.index(runner_up) else
                                     (runner_up, loser),)  # fmt: skip
    assert got.corrected.champion is None and got.corrected.ranking == ()
    # the new final: the model never compared these two; the human decides it
    x, y = sorted((loser, runner_up))
    review.adjudicate(repo, "rev", item, (x, y), Choice.A if x == runner_up else Choice.B, "clearer")
    got = review.review_bracket(repo, item, run)
    assert got.corrected.complete and got.corrected.champion == runner_up == got.corrected.winner
    assert got.corrected.ranking == (runner_up, loser, *sorted({0, max(other_side)}, key=o.index))
    final = got.corrected.rounds[-1][0]
    assert final.source == "human" and {final.match.i, final.match.j} == {loser, runner_up}
    # the export writes the corrected outcomes: the humans' two pairs, and the model's other pairs
    out = tmp_path / "ko.jsonl"
    summary = export(repo, "trl", out, ExportFilters(dataset="lists", run="ko"))
    rows = {tuple(r["pair"]): r for r in (json.loads(line) for line in out.read_text().splitlines())}
    assert rows[(a, b)]["chosen"] == RESPONSES[loser] and rows[(a, b)]["source"] == "adjudicated"
    assert rows[(x, y)]["chosen"] == RESPONSES[runner_up] and rows[(x, y)]["source"] == "adjudicated"
    model_pairs = {tuple(sorted((p.i, p.j))) for p in ko.outcomes} - {(a, b)}
    for k in model_pairs:
        assert rows[k]["source"] == "model" and rows[k]["chosen"] == RESPONSES[min(k)]
    assert summary.sources == {"adjudicated": 2, "model": len(model_pairs)}


def test_replay_rules_by_hand() -> None:
    """Five entrants: the bye to the last entrant without one, a tie advances the first listed, a pair
    nobody decided stops the replay; worked out by hand."""
    decided: dict[tuple[int, int], object] = {(0, 1): 1, (2, 3): None, (1, 4): 4, (4, 2): PENDING}

    def decide(a: int, b: int):  # noqa: ANN202
        return decided[(a, b)], "test"

    def shape(r):  # noqa: ANN001, ANN202
        return [[(m.match.i, m.match.j, m.match.advanced) for m in rnd] for rnd in r.rounds]

    r = replay_knockout((0, 1, 2, 3, 4), decide)
    # round 1: 4 sits out; round 2: 1, 2, 4 with 4 had a bye, so 2 sits out; round 3: 4 v 2 undecided
    assert shape(r) == [[(0, 1, 1), (2, 3, 2), (4, None, 4)], [(1, 4, 4), (2, None, 2)]]
    assert r.pending == ((4, 2),) and r.champion is None and not r.complete
    decided[(4, 2)] = 2
    r = replay_knockout((0, 1, 2, 3, 4), decide)
    assert shape(r)[-1] == [(4, 2, 2)] and r.champion == 2
    assert r.winner is None  # 2 went on from a tie in round 1: the bracket decides nothing
    assert r.ranking == (2, 4, 1, 0, 3)  # then by the round lost in, latest first, then entry order


def test_the_review_tab_shows_both_brackets_and_refuses_annotators(world, tmp_path: Path) -> None:  # noqa: ANN001
    from rrm_ui.domain import Role
    from rrm_ui.services import accounts
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui.context import AppContext
    from rrm_ui.ui.tabs import review as tab
    from tests.test_ui_pages import Req, seen

    repo, _ds, item, run, ko = world
    url = repo.engine.url.render_as_string(hide_password=False)
    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"), database_url=url,
                        hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    try:
        accounts.add_user(rt.repo, "ann", "correct horse battery")
        accounts.add_user(rt.repo, "rev", "correct horse battery", Role.REVIEWER)
        ctx = AppContext(rt, jobs, login=True)
        with pytest.raises(PermissionError):
            tab.show_bracket(ctx, Req("ann"), "lists", "ko", item)
        with pytest.raises(ValueError, match="run that played"):
            tab.show_bracket(ctx, Req("rev"), "lists", None, item)
        o = ko.entry_order
        a, b = sorted((o[0], o[1]))
        tab.decide(ctx, Req("rev"), "lists", "ko", f"{item}:{a}:{b}", "B is better", "no")  # the model chose a
        text = seen(tab.show_bracket(ctx, Req("rev"), "lists", "ko", item))
        assert "As the run played it" in text and "With the reviewers' decisions" in text
        assert "to decide (never compared)" in text and f"Matches overturned: {a + 1} v {b + 1}" in text
        assert f"Ranking: {', '.join(str(k + 1) for k in ko.ranking)}" in text
    finally:
        jobs.shutdown()
        rt.close()


def test_a_human_overturns_a_round_robin_match_and_the_ratings_refit(db_url: str) -> None:
    """A round robin in which the lower index always wins (0 first, 3 last); a reviewer decides that 1
    beat 0 and that 2 and 3 tie: the refit ranks 1 first (three wins), then 0, 2, 3 (points counted here),
    lists both overturned pairs, and leaves the run's own ratings as they were."""
    from rrm_ui.engine.tournament import round_robin

    repo = open_repository(Settings(database_url=db_url))
    ds_id, item = repo.add_item("lists", Item("q1", "Which is best?", RESPONSES), fmt="test", source="test")
    rr = asyncio.run(round_robin(4, _lower_wins))
    run, _ = repo.get_or_create_run(ds_id, "rr", backend="test", model="m", template="rrm", template_version="1",
                                    strategy="round-robin", sampling={}, compute={})  # fmt: skip
    repo.save_result(run.id, item, ItemResult(id="q1", strategy="round-robin", winner=rr.winner, ranking=rr.ranking,
                     pairs=rr.outcomes, template="rrm", template_version="1", model="m", backend="test"))  # fmt: skip
    before = review.review_round_robin(repo, item, run.id)
    assert before.model.ranking == before.corrected.ranking == (0, 1, 2, 3) and before.overturned == ()

    review.adjudicate(repo, "rev", item, (0, 1), Choice.B, "0 has an error")
    review.adjudicate(repo, "rev", item, (3, 2), Choice.TIE, "equally wrong")  # given the other way round
    got = review.review_round_robin(repo, item, run.id)
    decided = {(i, j): min(i, j) for i in range(4) for j in range(i + 1, 4)} | {(0, 1): 1, (2, 3): None}
    points = dict.fromkeys(range(4), 0.0)
    for (i, j), w in decided.items():
        if w is None:
            points[i] += 0.5
            points[j] += 0.5
        else:
            points[w] += 1
    assert got.corrected.wins == tuple(points[c] for c in range(4))
    assert got.corrected.ranking == tuple(sorted(range(4), key=lambda c: -points[c])) == (1, 0, 2, 3)
    assert got.overturned == ((0, 1), (2, 3))
    assert got.model.ranking == (0, 1, 2, 3)
    assert got.corrected.official_elo[1] == max(got.corrected.official_elo)
    other, _ = repo.get_or_create_run(ds_id, "ko", backend="test", model="m", template="rrm", template_version="1",
                                      strategy="knockout", sampling={}, compute={})  # fmt: skip
    with pytest.raises(ValueError, match="no round robin"):
        review.review_round_robin(repo, item, other.id)


def test_the_review_tab_shows_a_round_robins_refit(tmp_path: Path) -> None:
    """The Review tab's tournament box on a round robin: the run's ratings and the refit after a reviewer
    decided one match the other way (the ranking read off the page equals points counted here)."""
    from rrm_ui.domain import Role
    from rrm_ui.engine.tournament import round_robin
    from rrm_ui.services import accounts
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui.context import AppContext
    from rrm_ui.ui.tabs import review as tab
    from tests.test_ui_pages import Req, seen

    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'rr.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    try:
        repo = rt.repo
        ds_id, item = repo.add_item("lists", Item("q1", "Which is best?", RESPONSES), fmt="test", source="test")
        rr = asyncio.run(round_robin(4, _lower_wins))
        run, _ = repo.get_or_create_run(ds_id, "rr", backend="test", model="m", template="rrm", template_version="1",
                                        strategy="round-robin", sampling={}, compute={})  # fmt: skip
        repo.save_result(run.id, item, ItemResult(id="q1", strategy="round-robin", winner=rr.winner,
                         ranking=rr.ranking, pairs=rr.outcomes, template="rrm", template_version="1", model="m",
                         backend="test"))  # fmt: skip
        accounts.add_user(repo, "rev", "correct horse battery", Role.REVIEWER)
        ctx = AppContext(rt, jobs, login=True)
        tab.decide(ctx, Req("rev"), "lists", "rr", f"{item}:2:3", "B is better", "3 is right")  # model: 2
        text = seen(tab.show_bracket(ctx, Req("rev"), "lists", "rr", item))
        assert "As the run rated it" in text and "Refit with the reviewers' decisions" in text
        assert "Ranking: 1, 2, 3, 4" in text  # the run's
        points = {0: 3, 1: 2, 2: 0, 3: 1}  # 0 and 1 as the run had them; 3 now beats 2
        assert f"Ranking: {', '.join(str(c + 1) for c in sorted(points, key=lambda c: -points[c]))}" in text
        assert "Matches overturned: 3 v 4" in text
    finally:
        jobs.shutdown()
        rt.close()
