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

from rrm_ui.engine.tournament import Match, Ratings, _pick_bye, rate

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
    entry_pos = {c: p for p, c in enumerate(order)}
    entrants = list(order)
    rounds: list[tuple[ReplayedMatch, ...]] = []
    eliminated_in: dict[int, int] = {}
    had_bye: set[int] = set()
    round_no = 0
    while len(entrants) > 1:
        round_no += 1
        bye = _pick_bye(entrants, had_bye) if len(entrants) % 2 else None
        playing = [c for c in entrants if c != bye]
        pairs = [(playing[k], playing[k + 1]) for k in range(0, len(playing), 2)]
        slots: list[tuple[int, ReplayedMatch]] = []
        pending = []
        for a, b in pairs:
            winner, source = decide(a, b)
            if winner == PENDING:
                pending.append((a, b))
                continue
            if winner is None:
                match = Match(round_no, a, b, None, "bracket_order", advanced=a)
            else:
                match = Match(round_no, a, b, int(winner))
            eliminated_in[b if match.advanced == a else a] = round_no
            slots.append((entrants.index(a), ReplayedMatch(match, source)))
        if bye is not None:
            had_bye.add(bye)
            slots.append((entrants.index(bye), ReplayedMatch(Match(round_no, bye, None, bye), "bye")))
        slots.sort(key=lambda slot: slot[0])
        if slots:
            rounds.append(tuple(m for _, m in slots))
        if pending:
            return Replay(tuple(rounds), tuple(pending), None, None, ())
        entrants = [m.match.advanced for _, m in slots]
    champion = entrants[0] if entrants else None
    losers = sorted(eliminated_in, key=lambda c: (-eliminated_in[c], entry_pos[c]))
    decided = all(not m.match.advanced_by_tiebreak for rnd in rounds for m in rnd)
    ranking = () if champion is None else (champion, *losers)
    return Replay(tuple(rounds), (), champion, champion if decided else None, ranking)


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
