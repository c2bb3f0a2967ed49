"""Replaying a knockout bracket, or refitting a round robin's ratings, after a human overturned some
of its matches (pure logic).

The bracket is played again from its entry order with the same pairing rules as
:func:`rrm_ui.engine.tournament.knockout` (pairs in order, the bye to the last entrant without one,
survivors keeping their positions), each match decided by ``decide(a, b)``: a human decision where
there is one, else the run's own comparison of the pair. A pair nobody decided yet (a human's
overturn sent someone on to meet an opponent the model never faced) stops the replay at that
round: the result lists the pairs still to decide and has no champion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rrm_ui.engine.tournament import Bracket, Match, Ratings, rate

#: what ``decide`` returns for a pair nobody decided
PENDING = "pending"


@dataclass(frozen=True)
class ReplayedMatch:
    match: Match
    source: str  # "human", "model", or "bye"


@dataclass(frozen=True)
class Replay:
    rounds: tuple[tuple[ReplayedMatch, ...], ...]
    pending: tuple[tuple[int, int], ...]  # pairs to decide before the bracket can go on (as listed: i, j)
    champion: int | None  # None while something is pending
    winner: int | None  # the champion when every match had a winner
    ranking: tuple[int, ...]  # () while pending

    @property
    def complete(self) -> bool:
        return not self.pending


def entry_order(bracket: Sequence[Sequence[dict[str, Any]]]) -> tuple[int, ...]:
    """The entry order of a stored bracket (``item_results.bracket``): in round 1 the matches' entrants in
    slot order, the bye (the last entrant: nobody has had one yet) last."""
    if not bracket:
        return ()
    order: list[int] = []
    bye: list[int] = []
    for m in bracket[0]:
        if m["j"] is None:
            bye.append(m["i"])
        else:
            order += [m["i"], m["j"]]
    return tuple(order + bye)


def replay_knockout(order: Sequence[int], decide: Callable[[int, int], tuple[int | None | str, str]]) -> Replay:
    """Play the bracket again from ``order``; ``decide(a, b)`` gives (winner, source): the winner's index,
    None for a match without a winner (the first listed advances, as in the knockout), or
    :data:`PENDING`."""
    bracket = Bracket(order)
    rounds: list[tuple[ReplayedMatch, ...]] = []
    while not bracket.done:
        played: list[tuple[int, int, int | None]] = []
        pending: list[tuple[int, int]] = []
        sources: dict[int, str] = {}  # by the first-listed entrant, one match each per round
        for a, b in bracket.pairs():
            winner, source = decide(a, b)
            if winner == PENDING:
                pending.append((a, b))
                continue
            played.append((a, b, None if winner is None else int(winner)))
            sources[a] = source
        matches = bracket.matches(played)
        if matches:
            rounds.append(tuple(ReplayedMatch(m, "bye" if m.j is None else sources[m.i]) for m in matches))
        if pending:
            return Replay(tuple(rounds), tuple(pending), None, None, ())
        bracket.advance(matches)
    champion = bracket.entrants[0] if bracket.entrants else None
    ranking = () if champion is None else bracket.ranking(champion)
    return Replay(tuple(rounds), (), champion, champion if bracket.decided else None, ranking)


Pair = tuple[int, int]


def refit_round_robin(
    n: int, model: dict[Pair, int | None], human: dict[Pair, int | None]
) -> tuple[Ratings, tuple[Pair, ...]]:
    """A round robin's ratings and ranking with the humans' decisions in place of the run's matches.

    ``model`` and ``human`` map a pair ``(i, j)`` (``i < j``) to its winner (None: a tie); a human
    decision replaces the run's result of that pair, and a pair the run never compared is added.
    Returns the refit (:func:`~rrm_ui.engine.tournament.rate`, the same ranking rule as the run's) and
    the pairs whose winner the humans changed."""
    decided = {**model, **human}
    results = [(i, j, 0.5 if w is None else float(w == i)) for (i, j), w in sorted(decided.items())]
    changed = tuple(k for k in sorted(human) if k not in model or model[k] != human[k])
    return rate(n, results), changed
