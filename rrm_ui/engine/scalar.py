"""Judging a pair with a scalar reward model: one score per response, the higher wins.

A judge format with ``scores = True`` (``scalar-rm``, :mod:`rrm_ui.protocol.scalar_rm`) is judged here
instead of by sampling (:meth:`rrm_ui.engine.judge.Judge.judge_pair` hands the pair over):

- each response is scored once per item, in the conversation ``[user: query, assistant: response]``
  (``JudgeFormat.response_messages``), through ``Backend.score``; the scores are cached per judge, keyed
  by the item, the response index and the texts, so a knockout or a round robin over ``n`` candidates costs
  ``n`` forwards, not two per comparison (a comparison waiting for a score another one is computing waits for
  that one);
- a pair gives one :class:`~rrm_ui.domain.Judgment` (``a`` = ``i``, ``b`` = ``j``, sample 0): status
  ``ok``, verdict ``A`` / ``B`` from :func:`~rrm_ui.protocol.scalar_rm.verdict_from_scores` (equal scores:
  ``T``, a tie), no reasoning and no answer text, ``score_a`` and ``score_b``; prompt tokens and latency are
  the two forwards' (a cached score counts 0 seconds again);
- a failed forward makes the judgment status ``error`` with the reason (scores of the other response kept);
  it is not tried again (a reward model's forward is in-process), and a failed score is not cached;
- the compute settings (votes, swap, adaptive, budget forcing) do not apply: a score does not change with
  the order or the sample, so the pair is judged once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

from rrm_ui.backends.base import Scored
from rrm_ui.domain import Choice, Item, Judgment, PairOutcome, Status, Verdict
from rrm_ui.protocol.scalar_rm import verdict_from_scores

if TYPE_CHECKING:
    from rrm_ui.engine.judge import Judge

_VERDICTS = {Choice.A: Verdict.A, Choice.B: Verdict.B, Choice.TIE: Verdict.TIE}
#: scores kept per judge at most (oldest dropped first): many items' candidates, a few bytes each
CACHE_SIZE = 65536
SCORED = "score"  # a judgment's finish_reason: both responses scored
CUT = "score_cut"  # ... and at least one conversation was longer than the format's max_length and was cut


class ScoreCache:
    """Scores of one judge's responses, shared by every comparison: one forward per response."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._done: OrderedDict[tuple[str, int, str], Scored] = OrderedDict()
        self._pending: dict[tuple[str, int, str], asyncio.Future[Scored]] = {}  # forwards running now
        self.forwards = 0  # forwards actually run (observable: tests, benchmarks)

    @staticmethod
    def key(item: Item, index: int) -> tuple[str, int, str]:
        text = f"{item.query}\x1f{item.responses[index]}".encode()
        return item.id, index, hashlib.blake2b(text, digest_size=16).hexdigest()

    async def get(self, judge: Judge, item: Item, index: int) -> tuple[Scored, bool]:
        """The score of ``item.responses[index]`` and whether it was known (or being computed) already."""
        key = self.key(item, index)
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key], True
        loop = asyncio.get_running_loop()
        running = self._pending.get(key)
        if running is not None and running.get_loop() is loop:
            try:
                return await asyncio.shield(running), True
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this comparison was cancelled
                # the comparison that was computing it was cancelled: compute it here
        future: asyncio.Future[Scored] = loop.create_future()
        self._pending[key] = future
        fmt = judge.fmt
        messages = fmt.response_messages(item.query, item.responses[index])  # type: ignore[attr-defined]
        try:
            self.forwards += 1
            async with judge._slots:
                scored = await judge.backend.score(messages, getattr(fmt, "max_length", None))
        except BaseException as exc:
            if isinstance(exc, Exception):  # not cached: the next comparison tries again
                future.set_exception(exc)
                future.exception()  # retrieved: a failure nobody else awaited is no "never retrieved" warning
            else:
                future.cancel()
            raise
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
        self._done[key] = scored
        while len(self._done) > self.size:
            self._done.popitem(last=False)
        future.set_result(scored)
        return scored, False


def cache_of(judge: Judge) -> ScoreCache:
    """The judge's score cache (made on first use; kept on the judge object)."""
    cache = getattr(judge, "_score_cache", None)
    if cache is None:
        cache = ScoreCache()
        judge._score_cache = cache  # type: ignore[attr-defined]
    return cache


async def score_pair(judge: Judge, item: Item, i: int, j: int) -> PairOutcome:
    """Responses ``i`` and ``j`` of ``item`` judged by their scores (see the module's rules)."""
    cache = cache_of(judge)
    got = await asyncio.gather(cache.get(judge, item, i), cache.get(judge, item, j), return_exceptions=True)
    errors = [g for g in got if isinstance(g, BaseException)]
    for g in errors:
        if not isinstance(g, Exception):  # cancelled: not a failure of the judgment
            raise g
    known = [None if isinstance(g, BaseException) else g for g in got]
    scored = [g[0] for g in known if g is not None]
    score_a, score_b = (None if g is None else g[0].score for g in known)
    tokens = sum(s.prompt_tokens for s in scored) if scored else None
    latency = sum(g[0].latency_s for g in known if g is not None and not g[1])  # a cached score took no time
    if errors:
        exc = errors[0]
        status, verdict, error = Status.ERROR, None, f"{type(exc).__name__}: {exc}"
    else:
        status, verdict, error = Status.OK, _VERDICTS[verdict_from_scores(score_a, score_b)], None  # type: ignore[arg-type]
    truncated = any(s.truncated for s in scored)
    judgment = Judgment(
        a=i,
        b=j,
        sample=0,
        verdict=verdict,
        status=status,
        lenient_verdict=verdict if verdict in (Verdict.A, Verdict.B) else None,
        reasoning="",
        answer="",
        prompt_tokens=tokens,
        completion_tokens=0 if not errors else None,
        reasoning_tokens=None,
        ttft_s=None,
        latency_s=latency,
        finish_reason="error" if errors else (CUT if truncated else SCORED),
        seed=None,
        error=error,
        score_a=score_a,
        score_b=score_b,
    )
    if judge.observer.on_judgment is not None:
        from rrm_ui.engine.judge import _notify

        _notify(judge.observer.on_judgment, item.id, judgment)
    winner = judgment.winner
    return PairOutcome(
        i=i,
        j=j,
        winner=winner,
        votes={i: int(winner == i), j: int(winner == j)},
        invalid_votes=0 if status is Status.OK else 1,
        position_consistent=None,
        samples_spent=1,
        adaptive_reason=None,
        judgments=(judgment,),
    )
