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
- a tie (``Verdict.TIE``, from a format that can tie) counts toward neither response and is no
  invalid vote;
- the format's official parser decides (``JudgeFormat.read``); the prompt is the format's chat
  messages, or its raw prompt where it builds one itself (``uses_chat_template`` False);
- a format with ``games = 2`` is always judged in both orders, as with ``swap``;
- seeds: with a run seed ``S``, sample ``k`` of the ordered pair (a, b) of an item is seeded
  ``pair_seed(S, item.id, a, b) + k`` (:func:`pair_seed`), so items and orders draw apart while
  the same run seed reproduces the run;
- budget forcing (``Compute.budget_mode`` "force"): a sample that reached its thinking budget without
  ``</think>`` is continued in a second request, the prompt with its reasoning and ``close_text``
  appended, for ``answer_budget`` tokens (:meth:`Judge._force_close`); the judgment records
  ``forced_close`` and ``forced_at`` (the tokens generated before the close) and is parsed as usual;
- the winner is the response with more votes; equal votes (or none) give ``None``;
- with ``swap``, the majority of each order is compared: if both orders have a majority and
  they name different responses, the pair is position-inconsistent;
- ``Compute.order`` "shuffled" (without ``swap``): vote ``k`` is shown in its own seeded order
  (:func:`vote_swapped`), the RRM paper's protocol; no flip is measured then;
- adaptive compute stops by ``Compute.stopping``: the margin rule, or Adaptive-Consistency's Beta
  posterior (:func:`beta_confidence`); each pair's ``adaptive_reason`` says why it stopped;
- a scalar reward model's format (``JudgeFormat.scores``) is judged by :mod:`rrm_ui.engine.scalar`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from rrm_ui.backends.base import Backend
from rrm_ui.domain import (
    Choice,
    Compute,
    Delta,
    GenRecord,
    GenRequest,
    Item,
    Judgment,
    PairOutcome,
    Sampling,
    Status,
    Verdict,
    check_escalation,
    last_tries,
)
from rrm_ui.engine.scalar import score_pair
from rrm_ui.protocol.base import THINK_CLOSE, JudgeFormat

_VERDICTS = {Choice.A: Verdict.A, Choice.B: Verdict.B, Choice.TIE: Verdict.TIE}


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


#: pair seeds lie in [0, SEED_SPACE): with room for sample numbers they fit a signed 32-bit integer (the
#: judgments.seed column, an INTEGER in PostgreSQL; the seed fields of servers and samplers)
SEED_SPACE = 2**31 - 2**20


def pair_seed(seed: int, item_id: str, a: int, b: int) -> int:
    """The seed of sample 0 of the ordered pair (``a`` shown first, ``b`` second) of an item; sample ``k``
    is seeded ``pair_seed + k``.

    A stable hash (BLAKE2b) of the run seed, the item id and the order: the same run seed gives every
    sample the same seed again, in any process, while two items (or the two orders of a pair) get
    unrelated seeds; before, sample k of every item had the seed ``S + k`` and content-blind draws were
    alike across items. A backend that serves ``n`` samples in one request seeds its sample ``k``
    ``request seed + k`` (vLLM's ``n``, the openai backend's one request per sample), which is why the
    sample number is added rather than hashed: a sample tried again alone gets its own seed again.
    """
    key = f"{seed}\x1f{item_id}\x1f{a}\x1f{b}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % SEED_SPACE


def vote_swapped(seed: int | None, item_id: str, i: int, j: int, k: int) -> bool:
    """Whether vote ``k`` of the pair (``i``, ``j``) is shown swapped (``j`` first) under ``order`` "shuffled".

    The RRM paper's evaluation code places each vote in a random A/B order seeded from the vote's run seed
    and the prompt (``100 * seed + hash(prompt) % 10000``); Python's salted ``hash`` makes that placement
    differ between processes. rrm-ui draws it from a stable hash (BLAKE2b) of the run seed (0 without one),
    the item id, the pair and the vote number: every vote gets its own placement, the same in any process.
    """
    key = f"order\x1f{seed or 0}\x1f{item_id}\x1f{i}\x1f{j}\x1f{k}".encode()
    return bool(hashlib.blake2b(key, digest_size=8).digest()[-1] & 1)


def beta_confidence(lead: int, trail: int) -> float:
    """The posterior probability that the leading response's vote share is above one half, after ``lead``
    and ``trail`` votes, under a uniform prior: ``P(p > 1/2)`` for ``p ~ Beta(lead + 1, trail + 1)``.

    Adaptive-Consistency's Beta stopping criterion for two answers (Aggarwal et al., 2023, "Let's Sample
    Step by Step"). For whole-number parameters the Beta tail is a binomial sum: with ``n = lead + trail + 1``,
    ``P(p > 1/2) = P(Binomial(n, 1/2) <= lead)``. Ties between the two (``lead == trail``) give 0.5.
    """
    n = lead + trail + 1
    return sum(math.comb(n, m) for m in range(lead + 1)) / 2**n


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
        if j.verdict is Verdict.TIE:
            continue  # a tie: toward neither response, and not an invalid vote
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
        priority: int = 0,
    ) -> None:
        self.backend = backend
        self.priority = priority  # GenRequest.priority of every request (lower: earlier on a priority server)
        self.retries = retries  # tries again of a sample that failed for a transient reason
        self.retry_wait_s = retry_wait_s  # wait before the first try again; doubles each time
        self.fmt = fmt
        self.sampling = sampling or Sampling()
        self.compute = compute or Compute()
        check_escalation(self.compute, self.sampling.max_tokens)  # a cap that raises nothing is refused here too
        self.observer = observer or Observer()
        self.request_slots = max(1, concurrency or backend.concurrency)  # requests in flight at most
        self._slots = asyncio.Semaphore(self.request_slots)
        self._warned_no_continuation = False

    @property
    def both_orders(self) -> bool:
        """Each pair in both presentation orders: ``swap``, or a format whose official protocol always
        plays two games (``games = 2``, FastChat)."""
        return self.compute.swap or self.fmt.games >= 2

    async def judge_order(
        self, item: Item, a: int, b: int, n: int, first_sample: int = 0, thinking: int | None = None
    ) -> list[Judgment]:
        """``n`` samples of ``item.responses[a]`` shown first and ``item.responses[b]`` second, with a thinking
        budget of ``thinking`` tokens instead of ``sampling.max_tokens`` when given (adaptive escalation).

        A sample that fails for a transient reason (the server went away, the stream broke) is
        tried again, from the start and with its own seed, up to ``retries`` times after a
        growing wait. Every failed try is returned too, before the try that replaced it.
        """
        pairs = await self._sample(item, a, b, n, first_sample, 0, thinking)
        out = [jd for jd, _ in pairs]
        failed = [jd for jd, transient in pairs if transient]
        for attempt in range(1, self.retries + 1):
            if not failed:
                break
            wait = self.retry_wait_s * 2 ** (attempt - 1)
            log.warning("%s: %d sample(s) of %d-%d failed (%s); trying again in %.1f s (try %d of %d)",
                        item.id, len(failed), a, b, failed[0].error, wait, attempt + 1, self.retries + 1)  # fmt: skip
            await asyncio.sleep(wait)
            again = await asyncio.gather(*(self._sample(item, a, b, 1, jd.sample, attempt, thinking) for jd in failed))
            out += [jd for batch in again for jd, _ in batch]
            failed = [jd for batch in again for jd, transient in batch if transient]
        return out

    async def _sample(
        self, item: Item, a: int, b: int, n: int, first_sample: int, attempt: int, escalated: int | None = None
    ) -> list[tuple[Judgment, bool]]:
        """One request for ``n`` samples (at ``escalated`` thinking tokens when given); each judgment with
        whether its failure was transient."""
        first, second = item.responses[a], item.responses[b]
        prompt = None if self.fmt.uses_chat_template else self.fmt.raw_prompt(item.query, first, second)
        messages = () if prompt is not None else tuple(self.fmt.messages(item.query, first, second))
        seed = self.sampling.seed
        if seed is not None:
            seed = pair_seed(seed, item.id, a, b) + first_sample
        sampling = self.sampling.with_seed(seed)
        if escalated is not None:
            sampling = replace(sampling, max_tokens=escalated)
        thinking = None
        if self._native_force:  # one step: the backend closes at the budget, then answers
            thinking = sampling.max_tokens
            sampling = replace(sampling, max_tokens=thinking + self.compute.answer_budget)
        request = GenRequest(f"{item.id}:{a}-{b}:{next(_request_ids)}", messages, sampling, n, prompt,
                             thinking_budget=thinking, priority=self.priority)  # fmt: skip
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
        cut = [k for k, rec in sorted(records.items()) if self._forces(rec)]
        if cut:
            forced = await asyncio.gather(*(self._force_close(request, records[k], item.id, a, b, first_sample, attempt)
                                            for k in cut))  # fmt: skip
            records.update(zip(cut, forced, strict=True))
        out = []
        for k in range(n):
            rec = records.get(k) or _error_record(self.backend, sampling, k, "backend ended without a result")
            jd = self._to_judgment(rec, a, b, first_sample + k, attempt)
            if escalated is not None:
                jd = replace(jd, escalated_to=escalated)
            out.append((jd, rec.error is not None and rec.transient))
        if self.observer.on_judgment is not None:
            for jd, _ in out:
                _notify(self.observer.on_judgment, item.id, jd)
        return out

    @property
    def _native_force(self) -> bool:
        """Budget forcing in one step: the backend forces the same close itself (vLLM's thinking budget)."""
        c = self.compute
        return c.forces and self.fmt.thinks and self.backend.native_close == c.close_text

    def _forces(self, rec: GenRecord) -> bool:
        """Whether a sample is continued with a forced close: budget forcing is on, the backend can continue
        a sequence, and the sample ran out of tokens inside the thinking block."""
        if not self.compute.forces or not self.fmt.thinks or self._native_force:
            return False
        if rec.error is not None or rec.think_closed or rec.finish_reason != "length":
            return False
        if not self.backend.continues:
            if not self._warned_no_continuation:
                self._warned_no_continuation = True
                log.warning("budget forcing: the %s backend cannot continue a judgment; cut-off judgments stay "
                            "truncated", self.backend.name)  # fmt: skip
            return False
        return True

    async def _force_close(
        self, request: GenRequest, rec: GenRecord, item_id: str, a: int, b: int, first_sample: int, attempt: int
    ) -> GenRecord:
        """Budget forcing's second step: the same sequence, the prompt and the reasoning so far, with
        ``close_text`` appended, generating the answer for at most ``answer_budget`` tokens.

        One request for one sample, seeded as the sample was; the backend's prefix cache (vLLM) holds the
        prompt and most of the reasoning. The result is the sample: its reasoning, the close, the answer,
        ``forced_at`` the tokens generated before the close; tokens and latency are both steps' (the
        close's own tokens are not generated and not counted). A failure of the second step is the sample's.
        """
        head, _, tail = self.compute.close_text.partition(THINK_CLOSE)
        c = self.sampling
        sampling = Sampling(c.temperature, c.top_p, self.compute.answer_budget, rec.seed)
        follow = GenRequest(f"{request.request_id}:force-{rec.sample}", request.messages, sampling, 1, request.prompt,
                            continuation=rec.reasoning + self.compute.close_text, priority=self.priority)  # fmt: skip
        on_delta = self.observer.on_delta

        def show(delta: Delta) -> None:
            if on_delta is not None:
                _notify(on_delta, StreamUpdate(item_id, a, b, delta, first_sample, attempt))

        show(Delta(rec.sample, head, tail))
        answer: GenRecord | None = None
        async with self._slots:
            try:
                async with contextlib.aclosing(self.backend.stream(follow)) as events:
                    async for ev in events:
                        if isinstance(ev, GenRecord):
                            answer = ev
                        else:
                            show(Delta(rec.sample, ev.reasoning, ev.answer))
            except Exception as exc:  # noqa: BLE001 - a backend failure is data on the judgment
                answer = _error_record(self.backend, sampling, 0, f"forced close: {type(exc).__name__}: {exc}")
        if answer is None:
            answer = _error_record(self.backend, sampling, 0, "forced close: backend ended without a result")
        tokens = None
        if rec.completion_tokens is not None and answer.completion_tokens is not None:
            tokens = rec.completion_tokens + answer.completion_tokens
        return replace(
            rec,
            reasoning=rec.reasoning + head + answer.reasoning,  # a backend's answering sample has no reasoning
            answer=tail + answer.answer,
            think_closed=True,
            completion_tokens=tokens,
            latency_s=rec.latency_s + answer.latency_s,
            finish_reason=answer.finish_reason,
            error=answer.error,
            transient=answer.transient,
            forced_at=rec.completion_tokens,
        )

    def _to_judgment(self, rec: GenRecord, a: int, b: int, sample: int, attempt: int = 0) -> Judgment:
        if rec.error is not None:
            status, verdict, lenient = Status.ERROR, None, None
        else:
            parsed = self.fmt.parse(rec.reasoning, rec.answer, rec.think_closed)
            reading = self.fmt.read(rec.reasoning, rec.answer, rec.think_closed)  # the official parser, ties too
            status, lenient = reading.status, parsed.lenient_verdict
            verdict = None if reading.choice is None else _VERDICTS[reading.choice]
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
            forced_close=rec.forced_at is not None,
            forced_at=rec.forced_at,
        )

    async def judge_pair(self, item: Item, i: int, j: int) -> PairOutcome:
        """Judge responses ``i`` and ``j`` with the configured compute."""
        if self.fmt.scores:  # a scalar reward model: one score per response, no sampling (engine.scalar)
            return await score_pair(self, item, i, j)
        c = self.compute
        if c.adaptive:
            return await self._adaptive(item, i, j)
        if self._shuffled:  # one request per vote, each in its own seeded order, numbered by the vote
            placed = [self._placed(item, i, j, k) for k in range(c.votes)]
            batches = await asyncio.gather(*(self.judge_order(item, a, b, 1, k) for k, (a, b) in enumerate(placed)))
        else:
            orders = [(i, j), (j, i)] if self.both_orders else [(i, j)]
            batches = await asyncio.gather(*(self.judge_order(item, a, b, c.votes) for a, b in orders))
        judgments = [jd for batch in batches for jd in batch]
        return self._outcome(item, i, j, judgments, None)

    @property
    def _shuffled(self) -> bool:
        """One seeded random order per vote (``Compute.order`` "shuffled"); both orders take precedence."""
        return self.compute.order == "shuffled" and not self.both_orders

    def _placed(self, item: Item, i: int, j: int, k: int) -> tuple[int, int]:
        """The order vote ``k`` of the pair is shown in: its seeded order under ``order`` "shuffled", else
        as listed."""
        if self.compute.order != "shuffled":
            return (i, j)
        return (j, i) if vote_swapped(self.sampling.seed, item.id, i, j, k) else (i, j)

    async def _adaptive(self, item: Item, i: int, j: int) -> PairOutcome:
        """Two samples first (one per order with both orders, two of the one order without: one sample alone
        would always be "unanimous"); then more, one per order at a time, only while undecided.

        Stops at ``budget`` samples, or earlier by the stopping rule (``Compute.stopping``):
        "margin", when the first round is unanimous (every sample valid and agreeing) or the leader is
        ``margin`` votes ahead; "beta", once :func:`beta_confidence` of the votes so far reaches
        ``confidence``. Under ``order`` "shuffled" every vote is shown in its own seeded order. With
        ``escalate_to`` each round after the first thinks longer (:meth:`round_budget`).
        """
        c = self.compute
        judgments: list[Judgment] = []
        rounds = k = 0  # k: the next sample number (of each order with both orders; else the next vote's)
        while True:
            thinking = self.round_budget(rounds)
            room = max(0, c.budget - len(last_tries(judgments)))
            if self.both_orders:
                step = [(i, j, k), (j, i, k)][:room]
            else:
                step = [(*self._placed(item, i, j, v), v) for v in range(k, k + (2 if rounds == 0 else 1))][:room]
            if not step:
                votes, invalid = tally(judgments)
                reason = f"budget of {c.budget} samples spent; votes {_split(votes, i, j)}, {invalid} without verdict"
                break
            escalated = None if thinking == self.sampling.max_tokens else thinking
            batches = await asyncio.gather(*(self.judge_order(item, a, b, 1, s, escalated) for a, b, s in step))
            judgments += [jd for batch in batches for jd in batch]
            rounds += 1
            k += 1 if self.both_orders else len(step)
            votes, invalid = tally(judgments)
            reason = self._settled(votes, invalid, i, j, rounds, len(last_tries(judgments)))
            if reason is not None:
                break
        top = max((jd.escalated_to or 0 for jd in judgments), default=0)
        if top:
            reason = f"{reason}; thinking budget raised to {top} tokens (from {self.sampling.max_tokens})"
        return self._outcome(item, i, j, judgments, reason)

    def round_budget(self, rounds: int) -> int:
        """The thinking budget of adaptive round ``rounds`` (0: the first): ``sampling.max_tokens``, doubled
        for each round after the first up to ``Compute.escalate_to`` when that is set."""
        base = self.sampling.max_tokens
        cap = self.compute.escalate_to
        if cap is None or rounds == 0:  # a cap at or below the budget is refused when the Judge is built
            return base
        return min(cap, base * 2 ** min(rounds, 30))

    def _settled(self, votes: dict[int, int], invalid: int, i: int, j: int, rounds: int, spent: int) -> str | None:
        """Why adaptive sampling stops after this round (its audit line), or None to go on."""
        c = self.compute
        lead, trail = sorted((votes.get(i, 0), votes.get(j, 0)), reverse=True)
        if c.stopping == "beta":
            p = beta_confidence(lead, trail)
            if p >= c.confidence:
                return (f"Beta posterior P(majority) {p:.3f} >= {c.confidence:g} after {spent} samples "
                        f"(votes {_split(votes, i, j)}, {invalid} without verdict)")  # fmt: skip
            return None
        if rounds == 1 and invalid == 0 and len(votes) == 1:
            return f"first round unanimous ({spent} samples)"
        if rounds > 1 and lead - trail >= c.margin:
            return f"lead of {lead - trail} votes reached after {spent} samples"
        return None

    def _outcome(self, item: Item, i: int, j: int, judgments: list[Judgment], reason: str | None) -> PairOutcome:
        votes, invalid = tally(judgments)
        consistent = None
        if self.both_orders:
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
