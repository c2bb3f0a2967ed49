"""Judging whole items (two or more responses) and streams of items.

Strategies:
- ``pair``: exactly two responses, one :class:`PairOutcome`;
- ``knockout``: a seeded bracket (see :mod:`rrm_ui.engine.tournament`);
- ``round-robin``: every pair, Elo and Bradley-Terry ratings;
- ``auto``: ``pair`` for two responses, ``knockout`` for more.

Items run concurrently, as many as keep the backend full (:func:`items_in_flight_for`); each
result comes out as its item finishes (:func:`judge_completed`) or in input order
(:func:`judge_items`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

from rrm_ui.domain import Item, ItemResult
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.tournament import knockout, round_robin

STRATEGIES = ("auto", "pair", "knockout", "round-robin")
T = TypeVar("T")


def resolve_strategy(strategy: str, n_responses: int) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        return "pair" if n_responses == 2 else "knockout"
    if strategy == "pair" and n_responses != 2:
        raise ValueError(f"strategy 'pair' needs exactly 2 responses, found {n_responses}")
    return strategy


async def judge_item(judge: Judge, item: Item, strategy: str = "auto", *, bracket_seed: int | None = 0) -> ItemResult:
    """Judge one item with the given strategy and return everything decided about it."""
    strategy = resolve_strategy(strategy, len(item.responses))
    n = len(item.responses)
    common = dict(
        id=item.id,
        strategy=strategy,
        template=judge.fmt.name,
        template_version=judge.fmt.version,
        model=judge.backend.model,
        backend=judge.backend.name,
    )

    async def compare(i: int, j: int):  # noqa: ANN202 - the tournament's Compare
        return await judge.judge_pair(item, i, j)

    if strategy == "pair":
        outcome = await compare(0, 1)
        if outcome.winner is None:
            ranking: tuple[int, ...] = ()
        else:
            ranking = (outcome.winner, 1 - outcome.winner)
        return ItemResult(winner=outcome.winner, ranking=ranking, pairs=(outcome,), **common)
    if strategy == "knockout":
        ko = await knockout(n, compare, seed=bracket_seed)
        bracket = tuple(tuple(m.to_dict() for m in rnd) for rnd in ko.rounds)
        winner, ranking = _undecided_is_none(ko.winner, ko.ranking, ko.outcomes)
        return ItemResult(winner=winner, ranking=ranking, pairs=ko.outcomes, bracket=bracket, **common)
    rr = await round_robin(n, compare)
    ratings = {
        "elo": dict(enumerate(rr.elo)),
        "bradley_terry": dict(enumerate(rr.bradley_terry)),
        "wins": dict(enumerate(rr.wins)),
        **({"official_elo": dict(enumerate(rr.official_elo))} if rr.official_elo else {}),
    }
    winner, ranking = _undecided_is_none(rr.winner, rr.ranking, rr.outcomes)
    if winner is not None and abs(rr.bradley_terry[ranking[0]] - rr.bradley_terry[ranking[1]]) < 1e-9:
        winner = None  # the top two are tied: no single winner
    return ItemResult(winner=winner, ranking=ranking, pairs=rr.outcomes, ratings=ratings, **common)


def _undecided_is_none(winner: int, ranking: tuple[int, ...], outcomes: tuple) -> tuple[int | None, tuple[int, ...]]:
    """A tournament in which no comparison produced a verdict decided nothing: no winner, no ranking."""
    if any(o.winner is not None for o in outcomes):
        return winner, ranking
    return None, ()


def items_in_flight_for(judge: Judge) -> int:
    """How many items to keep open so the backend is kept full: as many as it takes requests at once.

    Every open item has at least one request in flight (or waiting for a request slot), so with
    as many items open as the judge has request slots no slot stays idle while items remain; a
    knockout round or both presentation orders only add requests. The judge's own slots (the
    backend's capacity: vLLM's ``max_num_seqs``, the endpoints' concurrency, transformers'
    batch size) bound what actually runs. At least 8.
    """
    return max(8, judge.request_slots)


async def judge_completed(
    judge: Judge,
    items: Iterable[Item],
    strategy: str = "auto",
    *,
    items_in_flight: int | None = None,
    bracket_seed: int | None = 0,
    window: int | None = None,
) -> AsyncIterator[tuple[int, ItemResult]]:
    """Judge items concurrently and yield ``(input index, result)`` as each item finishes.

    At most ``items_in_flight`` items are open at once (default: :func:`items_in_flight_for`);
    a finished item frees its place at once, so one long trace holds one place, not the rest.
    ``window`` (None: no bound) bounds how far ahead of the oldest unfinished item a new item may
    start, which bounds what a consumer that restores input order must hold (see
    :func:`ordered_window`). Closing the generator cancels the items still open.
    """
    limit = max(1, items_in_flight or items_in_flight_for(judge))
    ahead = max(limit, window) if window is not None else None
    source = iter(enumerate(items))
    pending: dict[asyncio.Task[ItemResult], int] = {}
    next_index = 0
    exhausted = False

    def room() -> bool:
        if len(pending) >= limit:
            return False
        return ahead is None or not pending or next_index - min(pending.values()) < ahead

    try:
        while True:
            while not exhausted and room():
                try:
                    index, item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                task = asyncio.create_task(judge_item(judge, item, strategy, bracket_seed=bracket_seed))
                pending[task] = index
                next_index = index + 1
            if not pending:
                return
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=pending.__getitem__):
                index = pending.pop(task)
                yield index, task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def ordered_window(items_in_flight: int) -> int:
    """How far ahead of its oldest unfinished item an input-order consumer lets new items start.

    Finished items wait for the oldest one to be handed on in order; a long trace there holds no
    place, but the waiting results take memory, so new items stop starting this far ahead of it.
    """
    return max(64, 4 * items_in_flight)


async def in_input_order(completed: AsyncIterator[tuple[int, T]]) -> AsyncIterator[T]:
    """Yield the values of ``(index, value)`` pairs (indices 0, 1, 2, ... in any order) by index."""
    held: dict[int, T] = {}
    next_out = 0
    async with contextlib.aclosing(completed) as stream:
        async for index, value in stream:
            held[index] = value
            while next_out in held:
                yield held.pop(next_out)
                next_out += 1


async def judge_items(
    judge: Judge,
    items: Iterable[Item],
    strategy: str = "auto",
    *,
    items_in_flight: int | None = None,
    bracket_seed: int | None = 0,
) -> AsyncIterator[ItemResult]:
    """Judge items concurrently (see :func:`judge_completed`) and yield their results in input order."""
    limit = max(1, items_in_flight or items_in_flight_for(judge))
    completed = judge_completed(judge, items, strategy, items_in_flight=limit, bracket_seed=bracket_seed,
                                window=ordered_window(limit))  # fmt: skip
    async with contextlib.aclosing(in_input_order(completed)) as ordered:
        async for result in ordered:
            yield result
