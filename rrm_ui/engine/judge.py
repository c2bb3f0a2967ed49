"""Judging one pair of responses: votes, both presentation orders, adaptive compute.

The :class:`Judge` renders a pair with a :class:`~rrm_ui.protocol.base.JudgeFormat`,
streams it through a :class:`~rrm_ui.backends.base.Backend`, parses every sample and
aggregates the samples into a :class:`~rrm_ui.domain.PairOutcome`.

Aggregation (documented in docs/engine.md):
- every sample's strict verdict is mapped back to a response index; samples without a
  strict verdict (truncated, no_verdict, invalid, error) are counted as ``invalid_votes``
  and never vote;
- a sample tried again after a transient failure (``retries``) counts once, by its last try;
  the failed tries stay in ``PairOutcome.judgments`` with status ``error`` and the reason;
- the winner is the response with more votes; equal votes (or none) give ``None``;
- with ``swap``, the majority of each order is compared: if both orders have a majority and
  they name different responses, the pair is position-inconsistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rrm_ui.backends.base import Backend
from rrm_ui.domain import (
    Compute,
    Delta,
    GenRecord,
    GenRequest,
    Item,
    Judgment,
    PairOutcome,
    Sampling,
    Status,
    last_tries,
)
from rrm_ui.protocol.base import JudgeFormat


@dataclass(frozen=True)
class StreamUpdate:
    """Live text of one sample of one ordered pair, for progress bars and the UI."""

    item_id: str
    a: int
    b: int
    delta: Delta
    first_sample: int = 0  # the judgment's sample number is first_sample + delta.sample
    attempt: int = 0  # a retried sample streams again from the start with attempt + 1

    @property
    def sample(self) -> int:
        return self.first_sample + self.delta.sample


@dataclass
class Observer:
    """Optional callbacks; all are called on the event loop and must return quickly."""

    on_delta: Callable[[StreamUpdate], None] | None = None
    on_judgment: Callable[[str, Judgment], None] | None = None


_request_ids = itertools.count()
log = logging.getLogger(__name__)


def _notify(callback: Callable[..., None], *args: object) -> None:
    """Call an observer; its failure is logged and never becomes an error of the judgment."""
    try:
        callback(*args)
    except Exception:  # noqa: BLE001 - a display problem must not fail or alter the judging
        log.exception("observer callback %r failed", callback)


def tally(judgments: list[Judgment] | tuple[Judgment, ...]) -> tuple[dict[int, int], int]:
    """Votes per response index and the number of samples without a strict verdict (last tries only)."""
    votes: dict[int, int] = {}
    invalid = 0
    for j in last_tries(judgments):
        w = j.winner
        if w is None:
            invalid += 1
        else:
            votes[w] = votes.get(w, 0) + 1
    return votes, invalid


def majority(votes: dict[int, int], i: int, j: int) -> int | None:
    vi, vj = votes.get(i, 0), votes.get(j, 0)
    if vi == vj:
        return None
    return i if vi > vj else j


class Judge:
    """Judges pairs of an item with a backend, a judge format, sampling and compute settings."""

    def __init__(
        self,
        backend: Backend,
        fmt: JudgeFormat,
        *,
        sampling: Sampling | None = None,
        compute: Compute | None = None,
        concurrency: int | None = None,
        observer: Observer | None = None,
        retries: int = 0,
        retry_wait_s: float = 5.0,
    ) -> None:
        self.backend = backend
        self.retries = retries  # tries again of a sample that failed for a transient reason
        self.retry_wait_s = retry_wait_s  # wait before the first try again; doubles each time
        self.fmt = fmt
        self.sampling = sampling or Sampling()
        self.compute = compute or Compute()
        self.observer = observer or Observer()
        self._slots = asyncio.Semaphore(concurrency or backend.concurrency)

    async def judge_order(self, item: Item, a: int, b: int, n: int, first_sample: int = 0) -> list[Judgment]:
        """``n`` samples of ``item.responses[a]`` shown first and ``item.responses[b]`` second.

        A sample that fails for a transient reason (the server went away, the stream broke) is
        tried again, from the start and with its own seed, up to ``retries`` times after a
        growing wait. Every failed try is returned too, before the try that replaced it.
        """
        pairs = await self._sample(item, a, b, n, first_sample, 0)
        out = [jd for jd, _ in pairs]
        failed = [jd for jd, transient in pairs if transient]
        for attempt in range(1, self.retries + 1):
            if not failed:
                break
            wait = self.retry_wait_s * 2 ** (attempt - 1)
            log.warning("%s: %d sample(s) of %d-%d failed (%s); trying again in %.1f s (try %d of %d)",
                        item.id, len(failed), a, b, failed[0].error, wait, attempt + 1, self.retries + 1)  # fmt: skip
            await asyncio.sleep(wait)
            again = await asyncio.gather(*(self._sample(item, a, b, 1, jd.sample, attempt) for jd in failed))
            out += [jd for batch in again for jd, _ in batch]
            failed = [jd for batch in again for jd, transient in batch if transient]
        return out

    async def _sample(
        self, item: Item, a: int, b: int, n: int, first_sample: int, attempt: int
    ) -> list[tuple[Judgment, bool]]:
        """One request for ``n`` samples; each judgment with whether its failure was transient."""
        messages = tuple(self.fmt.messages(item.query, item.responses[a], item.responses[b]))
        seed = self.sampling.seed
        sampling = self.sampling if seed is None else self.sampling.with_seed(seed + first_sample)
        request = GenRequest(f"{item.id}:{a}-{b}:{next(_request_ids)}", messages, sampling, n)
        records: dict[int, GenRecord] = {}
        on_delta = self.observer.on_delta
        async with self._slots:
            try:
                async with contextlib.aclosing(self.backend.stream(request)) as events:
                    async for ev in events:
                        if isinstance(ev, GenRecord):
                            records[ev.sample] = ev
                        elif on_delta is not None:
                            _notify(on_delta, StreamUpdate(item.id, a, b, ev, first_sample, attempt))
            except Exception as exc:  # noqa: BLE001 - a backend failure is data on the judgment
                message = f"{type(exc).__name__}: {exc}"
                for k in range(n):
                    records.setdefault(k, _error_record(self.backend, sampling, k, message))
        out = []
        for k in range(n):
            rec = records.get(k) or _error_record(self.backend, sampling, k, "backend ended without a result")
            jd = self._to_judgment(rec, a, b, first_sample + k, attempt)
            out.append((jd, rec.error is not None and rec.transient))
        if self.observer.on_judgment is not None:
            for jd, _ in out:
                _notify(self.observer.on_judgment, item.id, jd)
        return out

    def _to_judgment(self, rec: GenRecord, a: int, b: int, sample: int, attempt: int = 0) -> Judgment:
        if rec.error is not None:
            status, verdict, lenient = Status.ERROR, None, None
        else:
            parsed = self.fmt.parse(rec.reasoning, rec.answer, rec.think_closed)
            status, verdict, lenient = parsed.status, parsed.verdict, parsed.lenient_verdict
        return Judgment(
            a=a,
            b=b,
            sample=sample,
            verdict=verdict,
            status=status,
            lenient_verdict=lenient,
            reasoning=rec.reasoning,
            answer=rec.answer,
            prompt_tokens=rec.prompt_tokens,
            completion_tokens=rec.completion_tokens,
            reasoning_tokens=rec.reasoning_tokens,
            ttft_s=rec.ttft_s,
            latency_s=rec.latency_s,
            finish_reason=rec.finish_reason,
            seed=rec.seed,
            error=rec.error,
            endpoint=rec.endpoint,
            attempt=attempt,
        )

    async def judge_pair(self, item: Item, i: int, j: int) -> PairOutcome:
        """Judge responses ``i`` and ``j`` with the configured compute."""
        c = self.compute
        if c.adaptive:
            return await self._adaptive(item, i, j)
        orders = [(i, j), (j, i)] if c.swap else [(i, j)]
        batches = await asyncio.gather(*(self.judge_order(item, a, b, c.votes) for a, b in orders))
        judgments = [jd for batch in batches for jd in batch]
        return self._outcome(item, i, j, judgments, None)

    async def _adaptive(self, item: Item, i: int, j: int) -> PairOutcome:
        """One sample per order first; more, one per order at a time, only while undecided.

        Stops when the first round is unanimous (every sample valid and agreeing), when the
        leader is ``margin`` votes ahead, or when ``budget`` samples have been spent.
        """
        c = self.compute
        orders = [(i, j), (j, i)] if c.swap else [(i, j)]
        judgments: list[Judgment] = []
        rounds = 0
        while True:
            room = c.budget - len(last_tries(judgments))
            step = orders[: max(0, min(len(orders), room))]
            if not step:
                votes, invalid = tally(judgments)
                reason = f"budget of {c.budget} samples spent; votes {_split(votes, i, j)}, {invalid} without verdict"
                break
            batches = await asyncio.gather(*(self.judge_order(item, a, b, 1, rounds) for a, b in step))
            judgments += [jd for batch in batches for jd in batch]
            rounds += 1
            votes, invalid = tally(judgments)
            lead = abs(votes.get(i, 0) - votes.get(j, 0))
            if rounds == 1 and invalid == 0 and len(votes) == 1:
                reason = f"first round unanimous ({len(last_tries(judgments))} samples)"
                break
            if rounds > 1 and lead >= c.margin:
                reason = f"lead of {lead} votes reached after {len(last_tries(judgments))} samples"
                break
        return self._outcome(item, i, j, judgments, reason)

    def _outcome(self, item: Item, i: int, j: int, judgments: list[Judgment], reason: str | None) -> PairOutcome:
        votes, invalid = tally(judgments)
        consistent = None
        if self.compute.swap:
            forward = majority(tally([x for x in judgments if x.a == i])[0], i, j)
            backward = majority(tally([x for x in judgments if x.a == j])[0], i, j)
            if forward is not None and backward is not None:
                consistent = forward == backward
        return PairOutcome(
            i=i,
            j=j,
            winner=majority(votes, i, j),
            votes={i: votes.get(i, 0), j: votes.get(j, 0)},
            invalid_votes=invalid,
            position_consistent=consistent,
            samples_spent=len(last_tries(judgments)),
            adaptive_reason=reason,
            judgments=tuple(judgments),
        )


def _split(votes: dict[int, int], i: int, j: int) -> str:
    return f"{votes.get(i, 0)}-{votes.get(j, 0)}"


def _error_record(backend: Backend, sampling: Sampling, sample: int, message: str) -> GenRecord:
    return GenRecord(
        sample=sample,
        reasoning="",
        answer="",
        think_closed=False,
        prompt_tokens=None,
        completion_tokens=None,
        reasoning_tokens=None,
        ttft_s=None,
        latency_s=0.0,
        finish_reason="error",
        model=backend.model,
        backend=backend.name,
        sampling=sampling,
        seed=sampling.seed,
        error=message,
    )
