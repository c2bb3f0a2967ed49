"""Tournaments over n candidate responses: a knockout bracket and a round robin.

A Reward Reasoning Model only ever compares *two* responses.  To pick the best of
``n`` we organise pairwise comparisons into a tournament.  This module holds only
the tournament logic: how comparisons are scheduled and how their results are
turned into a winner, a ranking and ratings.  How a single pair is judged (prompt,
votes, swapping the presentation order) belongs to the caller, who passes an async
callable ``compare(i, j) -> PairOutcome``.  ``outcome.winner`` is ``i``, ``j`` or
``None`` (a tie: no majority).  When swap is off the caller shows ``i`` first.

Two strategies:

* :func:`knockout` -- n-1 comparisons in ceil(log2 n) rounds; cheap, yields a
  winner and a coarse ranking.
* :func:`round_robin` -- every pair once, n(n-1)/2 comparisons; expensive, yields a
  full ranking from Bradley-Terry ratings (Elo is reported alongside).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rrm_ui.domain import PairOutcome

Compare = Callable[[int, int], Awaitable[PairOutcome]]

__all__ = [
    "Compare",
    "KnockoutResult",
    "Match",
    "RoundRobinResult",
    "bradley_terry",
    "elo",
    "official_elo",
    "rate",
    "knockout",
    "match_score",
    "round_robin",
]


def match_score(outcome: PairOutcome) -> float:
    """Score of ``outcome.i``: 1.0 for a win, 0.0 for a loss, 0.5 for a tie (winner None)."""
    if outcome.winner is None:
        return 0.5
    return 1.0 if outcome.winner == outcome.i else 0.0


async def _checked_compare(compare: Compare, i: int, j: int) -> PairOutcome:
    """Call ``compare(i, j)`` and make sure the outcome is about that pair.

    A wrong index coming back would silently corrupt the bracket or the ratings,
    so we fail loudly instead.
    """
    outcome = await compare(i, j)
    if {outcome.i, outcome.j} != {i, j} or outcome.winner not in (i, j, None):
        raise ValueError(
            f"compare({i}, {j}) returned an outcome for ({outcome.i}, {outcome.j}) with winner {outcome.winner!r}"
        )
    return outcome


# --------------------------------------------------------------------------- knockout


@dataclass(frozen=True)
class Match:
    """One slot of a knockout round.

    ``i`` is listed first (the higher bracket seed); ``j`` is None for a bye, in
    which case ``i`` advanced without a comparison.  ``winner`` is who won the
    comparison (the bye's entrant for a bye) and None when it had no winner (a
    tie, or no valid vote).  ``advanced`` is who went on to the next round; after
    a tie that is decided by ``tiebreak`` (``"bracket_order"``: the first listed),
    a bracket convenience that never makes a winner: :attr:`advanced_by_tiebreak`.
    """

    round: int  # 1-based
    i: int
    j: int | None
    winner: int | None
    tiebreak: str | None = None
    advanced: int | None = None  # defaults to the winner

    def __post_init__(self) -> None:
        if self.advanced is None:
            if self.winner is None:
                raise ValueError("a match without a winner must say who advanced")
            object.__setattr__(self, "advanced", self.winner)

    @property
    def advanced_by_tiebreak(self) -> bool:
        return self.tiebreak is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "i": self.i,
            "j": self.j,
            "winner": self.winner,
            "tiebreak": self.tiebreak,
            "advanced": self.advanced,
            "advanced_by_tiebreak": self.advanced_by_tiebreak,
        }


@dataclass(frozen=True)
class KnockoutResult:
    """Result of :func:`knockout`.

    ``champion`` is who came out of the bracket; ``winner`` is the champion only
    when every match of the bracket had a winner (``decided``), else None: a
    candidate that advanced by a tiebreak never beat its opponent, and the one it
    knocked out was never beaten, so nobody is known to be the best.

    ``ranking`` lists all candidates, best first: the champion, the loser of the
    final, then the other losers by the round they were eliminated in (latest
    first) and, within a round, by their position in ``entry_order``.  Only the
    champion of a decided bracket is really decided; the rest is a coarse order
    (players knocked out in the same round were never compared with each other).
    """

    winner: int | None
    ranking: tuple[int, ...]
    rounds: tuple[tuple[Match, ...], ...]
    outcomes: tuple[PairOutcome, ...]  # in the order played
    entry_order: tuple[int, ...]
    champion: int

    @property
    def tied_matches(self) -> tuple[Match, ...]:
        """The matches whose entrant advanced by a tiebreak, in the order played."""
        return tuple(m for rnd in self.rounds for m in rnd if m.advanced_by_tiebreak)

    @property
    def decided(self) -> bool:
        return not self.tied_matches


def _pick_bye(entrants: list[int], had_bye: set[int]) -> int:
    """The entrant who sits out an odd-sized round.

    It is the last entrant (in the current order) who has not had a bye yet, so
    byes are spread out: nobody gets a second free pass while someone else in the
    round has had none.  If everyone has had one, the last entrant gets it.
    """
    for candidate in reversed(entrants):
        if candidate not in had_bye:
            return candidate
    return entrants[-1]


async def knockout(n: int, compare: Compare, *, seed: int | None = 0) -> KnockoutResult:
    """Single-elimination bracket over candidates ``0..n-1``.

    Seeding: with ``seed=None`` candidates enter in input order.  Otherwise the
    entry order is ``random.Random(seed).shuffle`` of ``0..n-1``: a candidate's
    position in the input list then cannot favour it (e.g. by a lucky bye or an
    easy first opponent), and the same seed reproduces the same bracket.

    Each round pairs the entrants in order (1st vs 2nd, 3rd vs 4th, ...); with an
    odd count one entrant gets a bye (see :func:`_pick_bye`) and advances without a
    comparison.  Survivors keep their relative order: each slot (match or bye)
    sits at the position of its first-listed entrant.  All comparisons of a round
    run concurrently; the next round starts when the whole round is done.

    Ties (``outcome.winner is None``: no majority, or no valid vote): the match has
    no winner; the entrant listed first -- the higher bracket seed -- advances so
    the bracket can be played out, and the match records ``tiebreak="bracket_order"``
    (``advanced_by_tiebreak``).  Such a bracket decides nothing: the result's
    ``winner`` is None (its ``champion`` and ``ranking`` are kept for display).

    Exactly n-1 comparisons in ceil(log2 n) rounds.
    """
    if n < 1:
        raise ValueError("a knockout needs at least one candidate")
    order = list(range(n))
    if seed is not None:
        random.Random(seed).shuffle(order)
    bracket = Bracket(order)
    outcomes: list[PairOutcome] = []
    while not bracket.done:
        pairs = bracket.pairs()
        played = await asyncio.gather(*(_checked_compare(compare, a, b) for a, b in pairs))
        outcomes.extend(played)
        bracket.advance(bracket.matches([(a, b, o.winner) for (a, b), o in zip(pairs, played, strict=True)]))

    champion = bracket.entrants[0]
    return KnockoutResult(
        winner=champion if bracket.decided else None,
        champion=champion,
        ranking=bracket.ranking(champion),
        rounds=tuple(bracket.rounds),
        outcomes=tuple(outcomes),
        entry_order=tuple(order),
    )


class Bracket:
    """A knockout bracket between rounds: the pairing rules of :func:`knockout`, shared with the replay
    of a bracket after human overturns (:func:`rrm_ui.engine.replay.replay_knockout`).

    Per round: :meth:`pairs` starts it (the pairs in order, the bye aside), :meth:`matches` turns the
    winners of the played pairs into the round's slots in order, :meth:`advance` closes it.
    """

    def __init__(self, order: Sequence[int]) -> None:
        self.entry_pos = {c: p for p, c in enumerate(order)}
        self.entrants = list(order)
        self.rounds: list[tuple[Match, ...]] = []
        self.eliminated_in: dict[int, int] = {}  # candidate -> round it lost in
        self.had_bye: set[int] = set()
        self.round_no = 0
        self.bye: int | None = None

    @property
    def done(self) -> bool:
        return len(self.entrants) <= 1

    def pairs(self) -> list[tuple[int, int]]:
        """Start the next round: the entrants paired in order, with an odd count one sitting out
        (:func:`_pick_bye`)."""
        self.round_no += 1
        self.bye = _pick_bye(self.entrants, self.had_bye) if len(self.entrants) % 2 else None
        playing = [c for c in self.entrants if c != self.bye]
        return [(playing[k], playing[k + 1]) for k in range(0, len(playing), 2)]

    def matches(self, played: Sequence[tuple[int, int, int | None]]) -> tuple[Match, ...]:
        """The round's slots from ``(a, b, winner)`` of the pairs played (a pair without a winner: the
        first listed advances by bracket order) and its bye, each at the position of its first-listed
        entrant."""
        slots: list[tuple[int, Match]] = []
        for a, b, winner in played:
            if winner is None:
                match = Match(self.round_no, a, b, None, "bracket_order", advanced=a)
            else:
                match = Match(self.round_no, a, b, winner)
            self.eliminated_in[b if match.advanced == a else a] = self.round_no
            slots.append((self.entrants.index(a), match))
        if self.bye is not None:
            self.had_bye.add(self.bye)
            slots.append((self.entrants.index(self.bye), Match(self.round_no, self.bye, None, self.bye)))
        slots.sort(key=lambda slot: slot[0])
        return tuple(m for _, m in slots)

    def advance(self, matches: tuple[Match, ...]) -> None:
        """Close the round: its slots' entrants go on, in slot order."""
        self.rounds.append(matches)
        self.entrants = [m.advanced for m in matches]

    @property
    def decided(self) -> bool:
        return all(not m.advanced_by_tiebreak for rnd in self.rounds for m in rnd)

    def ranking(self, champion: int) -> tuple[int, ...]:
        """The champion, then the others by the round they lost in (later first), ties by entry order."""
        losers = sorted(self.eliminated_in, key=lambda c: (-self.eliminated_in[c], self.entry_pos[c]))
        return (champion, *losers)


# ------------------------------------------------------------------------ ratings


def elo(
    n: int,
    results: Sequence[tuple[int, int, float]],
    *,
    k: float = 32.0,
    scale: float = 400.0,
    initial: float = 1000.0,
) -> list[float]:
    """Sequential Elo ratings from ``(i, j, score_i)`` results, in the given order.

    Everyone starts at ``initial``.  For each match the expected score of ``i`` is
    ``E_i = 1 / (1 + 10 ** ((R_j - R_i) / scale))``; then ``R_i += k * (s_i - E_i)``
    and ``R_j -= k * (s_i - E_i)`` (a tie is ``s_i = 0.5``).  The result depends on
    the order of the matches, which is why rankings use :func:`bradley_terry`.
    """
    ratings = [float(initial)] * n
    for i, j, score_i in results:
        expected_i = 1.0 / (1.0 + 10.0 ** ((ratings[j] - ratings[i]) / scale))
        delta = k * (score_i - expected_i)
        ratings[i] += delta
        ratings[j] -= delta
    return ratings


def official_elo(n: int, results: Sequence[tuple[int, int, float]], *, seed: int = 0) -> tuple[list[float], int]:
    """The RRM paper's Elo for one item, as ``RRM-evaluation/scripts/elo_accuracy_results.py``
    (microsoft/LMOps at af6bc85) computes it: the matches shuffled by Python's ``random`` seeded with
    ``seed`` (the script seeds once with 0 and shuffles every question in turn; here each item's matches
    are shuffled by a generator seeded afresh, so an item's ratings do not depend on the items before
    it), then ``evalica.elo`` with the library's defaults over rivals named by their index as text,
    a tie ``Winner.Draw``. Returns the ratings per candidate (nan for one in no match) and the top
    candidate, ``scores.idxmax()``: the first of the best in evalica's order (first appearance)."""
    import random

    from evalica import Winner
    from evalica import elo as evalica_elo

    matches = [(str(i), str(j), Winner.Draw if s == 0.5 else Winner.X if s == 1.0 else Winner.Y)
               for i, j, s in results]  # fmt: skip
    if not matches:
        raise ValueError("no matches to rate")
    random.Random(seed).shuffle(matches)
    found = evalica_elo([m[0] for m in matches], [m[1] for m in matches], [m[2] for m in matches])
    scores = found.scores
    return [float(scores.get(str(c), math.nan)) for c in range(n)], int(scores.idxmax())


def bradley_terry(
    n: int,
    results: Sequence[tuple[int, int, float]],
    *,
    prior: float = 0.5,
    iters: int = 1000,
    tol: float = 1e-10,
) -> list[float]:
    """Bradley-Terry ratings on the Elo scale, fitted with Hunter's (2004) MM algorithm.

    The model: ``P(i beats j) = p_i / (p_i + p_j)``.  A result ``(i, j, s)`` gives
    ``s`` wins to ``i`` and ``1 - s`` to ``j`` (a tie is half a win each).

    Prior: every candidate also gets ``prior`` virtual wins and ``prior`` virtual
    losses against a virtual average opponent of strength 1 (the geometric mean,
    since strengths are renormalised to geometric mean 1 after every step).  This
    keeps undefeated and winless candidates finite.  With ``prior=0`` the plain
    maximum-likelihood fit is returned; it only exists when every candidate has
    at least one win and one loss (checked, ValueError otherwise).

    The MM step is ``p_k = W_k / (sum_l n_kl / (p_k + p_l) + 2*prior / (p_k + 1))``
    with ``W_k`` the (real + virtual) wins and ``n_kl`` the games between k and l.
    It stops when no log-strength moves more than ``tol``.

    Returns ``1000 + 400 * log10(p_k)``: the mean rating is 1000 and a 400-point
    gap means 10:1 odds, as in Elo.  Unlike sequential :func:`elo` the fit uses
    only the totals, so it does not depend on the order of the matches.
    """
    if prior < 0:
        raise ValueError("prior must be non-negative")
    wins = [float(prior)] * n
    games = [[0.0] * n for _ in range(n)]
    played = [0.0] * n
    for i, j, score_i in results:
        wins[i] += score_i
        wins[j] += 1.0 - score_i
        games[i][j] += 1.0
        games[j][i] += 1.0
        played[i] += 1.0
        played[j] += 1.0
    if prior == 0 and any(w <= 0 or w >= g for w, g in zip(wins, played, strict=False)):
        raise ValueError("with prior=0 every candidate needs at least one win and one loss")

    strengths = [1.0] * n
    for _ in range(iters):
        new = []
        for a in range(n):
            denom = 2.0 * prior / (strengths[a] + 1.0)
            denom += sum(games[a][b] / (strengths[a] + strengths[b]) for b in range(n) if games[a][b])
            new.append(wins[a] / denom if denom else 1.0)
        log_mean = sum(math.log(p) for p in new) / n
        new = [p / math.exp(log_mean) for p in new]
        change = max(abs(math.log(p / q)) for p, q in zip(new, strengths, strict=False))
        strengths = new
        if change < tol:
            break
    return [1000.0 + 400.0 * math.log10(p) for p in strengths]


# --------------------------------------------------------------------- round robin


@dataclass(frozen=True)
class RoundRobinResult:
    """Result of :func:`round_robin`; all per-candidate tuples are indexed by candidate."""

    winner: int  # ranking[0]
    ranking: tuple[int, ...]
    elo: tuple[float, ...]
    bradley_terry: tuple[float, ...]
    wins: tuple[float, ...]  # match points, a tie counts 0.5
    outcomes: tuple[PairOutcome, ...]  # sorted by (i, j)
    official_elo: tuple[float, ...] = ()  # the RRM paper's Elo (official_elo), reported beside BT

    def match_table(self) -> list[dict[str, Any]]:
        """One row per comparison: ``i``, ``j``, ``winner`` and the score of ``i``."""
        return [{"i": o.i, "j": o.j, "winner": o.winner, "score_i": match_score(o)} for o in self.outcomes]


async def round_robin(n: int, compare: Compare, *, concurrency_hint: int | None = None) -> RoundRobinResult:
    """Compare every unordered pair ``i < j`` once and rank by Bradley-Terry rating.

    All n(n-1)/2 comparisons are launched together with ``asyncio.gather``; the
    caller's ``compare`` is where real concurrency is limited (backend slots).  If
    ``concurrency_hint`` is given, at most that many comparisons are in flight at
    once, which is handy when ``compare`` does no limiting of its own.

    Ranking: BT rating descending (ratings equal to 1e-9 count as equal, so float
    noise decides nothing), then match points descending, then index ascending.
    BT is used rather than Elo because it does not depend on match order; Elo is
    computed over the matches in (i, j) order and reported for reference.
    """
    if n < 1:
        raise ValueError("a round robin needs at least one candidate")
    if concurrency_hint is not None and concurrency_hint < 1:
        raise ValueError("concurrency_hint must be at least 1")
    limit = asyncio.Semaphore(concurrency_hint) if concurrency_hint else None

    async def run(i: int, j: int) -> PairOutcome:
        if limit is None:
            return await _checked_compare(compare, i, j)
        async with limit:
            return await _checked_compare(compare, i, j)

    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    played = await asyncio.gather(*(run(i, j) for i, j in pairs))

    results = [(i, j, match_score(o)) for (i, j), o in zip(pairs, played, strict=False)]

    fit = rate(n, results)
    return RoundRobinResult(
        winner=fit.ranking[0],
        ranking=fit.ranking,
        elo=fit.elo,
        bradley_terry=fit.bradley_terry,
        wins=fit.wins,
        outcomes=tuple(sorted(played, key=lambda o: (o.i, o.j))),
        official_elo=fit.official_elo,
    )


@dataclass(frozen=True)
class Ratings:
    """Every rating of a round robin's results and the ranking (:func:`rate`)."""

    ranking: tuple[int, ...]
    elo: tuple[float, ...]
    bradley_terry: tuple[float, ...]
    wins: tuple[float, ...]
    official_elo: tuple[float, ...]


def rate(n: int, results: Sequence[tuple[int, int, float]]) -> Ratings:
    """Ratings of ``(i, j, score_i)`` results and the ranking a round robin uses: Bradley-Terry rating
    descending (ratings equal to 1e-9 count as equal), then match points, then index. Used by
    :func:`round_robin` and by the refit after a human overturned matches (``engine.replay``)."""
    points = [0.0] * n
    for i, j, score_i in results:
        points[i] += score_i
        points[j] += 1.0 - score_i
    bt = bradley_terry(n, results)
    ranking = tuple(sorted(range(n), key=lambda c: (-round(bt[c], 9), -points[c], c)))
    paper = tuple(official_elo(n, results)[0]) if results else ()
    return Ratings(ranking, tuple(elo(n, results)), tuple(bt), tuple(points), paper)
