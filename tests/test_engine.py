"""Tests for rrm_ui.engine (Judge, runner) with a scripted backend.

Only the backend is fake: the real :class:`~rrm_ui.engine.judge.Judge`, the real RRM
prompt and the real verdict parser run.  :class:`ScriptedBackend` reads the rendered
user message back to find which response was shown first and second, and asks a
``script(first_text, second_text, sample_index_within_call)`` what to "generate".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from rrm_ui.backends.base import Backend, Event, SampleTracker
from rrm_ui.domain import (
    Compute,
    Delta,
    GenRequest,
    Item,
    ItemResult,
    Judgment,
    Sampling,
    Status,
    Verdict,
)
from rrm_ui.engine.judge import Judge, Observer, StreamUpdate
from rrm_ui.engine.runner import judge_item, judge_items, resolve_strategy
from rrm_ui.protocol.rrm import RRM_FORMAT

# ----------------------------------------------------------------------------- doubles


def seed_of(seed: int, item_id: str, a: int, b: int, sample: int = 0) -> int:
    """Sample ``sample``'s seed as docs/engine.md states it: BLAKE2b-64 of the run seed, the item id and
    the order (separated by U+001F), big-endian, modulo 2^31 - 2^20, plus the sample number."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}\x1f{item_id}\x1f{a}\x1f{b}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 2**20) + sample


Script = Callable[[str, str, int], str]
Delay = Callable[[str, str, str], float]

_USER_RE = re.compile(
    r"## Query\n\n(?P<query>.*?)\n\n## Assistant responses\n\n"
    r"### Assistant 1\n\n(?P<first>.*?)\n\n\n### Assistant 2\n\n(?P<second>.*?)\n\n## Analysis\n\n",
    re.S,
)


def shown(request: GenRequest) -> tuple[str, str, str]:
    """(query, first shown response, second shown response) of a rendered RRM request."""
    user = [m for m in request.messages if m["role"] == "user"]
    assert len(user) == 1
    m = _USER_RE.search(user[0]["content"])
    assert m is not None, user[0]["content"]
    return m.group("query"), m.group("first"), m.group("second")


@dataclass(frozen=True)
class Call:
    query: str
    first: str
    second: str
    n: int
    seed: int | None


class ScriptedBackend(Backend):
    """Streams scripted outputs in small chunks through a real SampleTracker."""

    name = "scripted"
    concurrency = 8

    def __init__(
        self,
        script: Script,
        *,
        model: str = "scripted-model",
        chunk: int = 5,
        delay: Delay | None = None,
    ) -> None:
        super().__init__(model)
        self.script = script
        self.chunk = chunk
        self.delay = delay or (lambda query, first, second: 0.0)
        self.calls: list[Call] = []
        self.active = 0
        self.max_active = 0

    def pairs_requested(self) -> list[tuple[str, str, int]]:
        return [(c.first, c.second, c.n) for c in self.calls]

    def before_sample(self, first: str, second: str, k: int) -> None:
        """Hook for failing variants; called before sample ``k`` starts."""

    def error_for(self, first: str, second: str, k: int) -> str | None:
        """Hook for variants that report a failed sample as a record with ``error``."""
        return None

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        query, first, second = shown(request)
        self.calls.append(Call(query, first, second, request.n, request.sampling.seed))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            pause = self.delay(query, first, second)
            for k in range(request.n):
                self.before_sample(first, second, k)
                tracker = SampleTracker(
                    k,
                    backend=self.name,
                    model=self.model,
                    sampling=request.sampling,
                    seed=request.sampling.seed,
                )
                text = self.script(first, second, k)
                for start in range(0, len(text), self.chunk):
                    await asyncio.sleep(pause)
                    delta = tracker.add_text(text[start : start + self.chunk], 1)
                    if delta is not None:
                        yield delta
                await asyncio.sleep(0)
                error = self.error_for(first, second, k)
                if error is not None:
                    yield tracker.finish("error", error=error, transient=getattr(self, "transient", False))
                else:
                    yield tracker.finish("stop" if tracker.think_closed else "length")
        finally:
            self.active -= 1


class RaisingBackend(ScriptedBackend):
    """Raises ``RuntimeError`` when ``fails(first, second, k)`` says so."""

    def __init__(self, script: Script, fails: Callable[[str, str, int], bool], **kw: object) -> None:
        super().__init__(script, **kw)  # type: ignore[arg-type]
        self.fails = fails

    def before_sample(self, first: str, second: str, k: int) -> None:
        if self.fails(first, second, k):
            raise RuntimeError(f"boom on {first} vs {second}")


class ErrorRecordBackend(ScriptedBackend):
    """Ends a sample with a record carrying ``error`` when ``fails(first, second, k)``.

    ``transient`` marks those failures as ones that may go away by trying again (a server gone).
    """

    def __init__(
        self, script: Script, fails: Callable[[str, str, int], bool], *, transient: bool = False, **kw: object
    ) -> None:
        super().__init__(script, **kw)  # type: ignore[arg-type]
        self.fails = fails
        self.transient = transient

    def error_for(self, first: str, second: str, k: int) -> str | None:
        return "upstream said 500" if self.fails(first, second, k) else None


# ----------------------------------------------------------------------------- scripts

REASONING = "Let me compare the two responses carefully."


def says(n: int) -> str:
    return f"{REASONING}</think>\n\n\\boxed{{Assistant {n}}}"


TRUNCATED = "Let me think about this for a very long time and never stop"
NO_VERDICT = "Done thinking.</think>\n\nBoth are fine, really."
INVALID = "Hmm.</think>\n\n\\boxed{Assistant 3}"


def prefer_first(first: str, second: str, k: int) -> str:
    return says(1)


def prefer_text(text: str) -> Script:
    def script(first: str, second: str, k: int) -> str:
        if text not in (first, second):
            raise AssertionError(f"{text!r} not shown")
        return says(1 if first == text else 2)

    return script


def prefer_longest(first: str, second: str, k: int) -> str:
    return says(1 if len(first) > len(second) else 2)


def always(output: str) -> Script:
    return lambda first, second, k: output


QUERY = "What is 2+2?"
GOOD = "2+2 equals 4."
BAD = "2+2 equals 5, obviously."
ITEM = Item("q1", QUERY, (BAD, GOOD))  # GOOD is response 1


def make_judge(backend: Backend, **compute: object) -> Judge:
    concurrency = compute.pop("concurrency", None)
    observer = compute.pop("observer", None)
    sampling = compute.pop("sampling", None)
    return Judge(
        backend,
        RRM_FORMAT,
        sampling=sampling,  # type: ignore[arg-type]
        compute=Compute(**compute),  # type: ignore[arg-type]
        concurrency=concurrency,  # type: ignore[arg-type]
        observer=observer,  # type: ignore[arg-type]
    )


def pair(judge: Judge, item: Item = ITEM, i: int = 0, j: int = 1):  # noqa: ANN201
    return asyncio.run(judge.judge_pair(item, i, j))


# ----------------------------------------------------------------------------- the double itself


def test_scripted_backend_reads_the_rendered_pair_back() -> None:
    backend = ScriptedBackend(prefer_first)
    judge = make_judge(backend)
    pair(judge)
    assert backend.calls == [Call(QUERY, BAD, GOOD, 1, None)]


# ----------------------------------------------------------------------------- votes


def test_votes_one_request_per_order_with_n_samples_and_majority() -> None:
    outputs = [says(2), says(2), says(1), TRUNCATED, NO_VERDICT]
    backend = ScriptedBackend(lambda first, second, k: outputs[k])
    out = pair(make_judge(backend, votes=5))
    assert backend.pairs_requested() == [(BAD, GOOD, 5)]
    assert out.i == 0 and out.j == 1
    assert out.winner == 1
    assert out.votes == {0: 1, 1: 2}
    assert out.invalid_votes == 2
    assert out.samples_spent == 5
    assert out.position_consistent is None  # no swap
    assert out.adaptive_reason is None
    assert [j.status for j in out.judgments] == [
        Status.OK,
        Status.OK,
        Status.OK,
        Status.TRUNCATED,
        Status.NO_VERDICT,
    ]


def test_votes_with_swap_send_one_request_per_order() -> None:
    backend = ScriptedBackend(prefer_text(GOOD))
    out = pair(make_judge(backend, votes=3, swap=True))
    assert sorted(backend.pairs_requested()) == sorted([(BAD, GOOD, 3), (GOOD, BAD, 3)])
    assert out.votes == {0: 0, 1: 6}
    assert out.winner == 1
    assert out.invalid_votes == 0
    assert out.samples_spent == 6


def test_exact_tie_has_no_winner() -> None:
    backend = ScriptedBackend(lambda first, second, k: says(1 + k % 2))
    out = pair(make_judge(backend, votes=4))
    assert out.votes == {0: 2, 1: 2}
    assert out.winner is None
    assert out.invalid_votes == 0


def test_tie_among_valid_votes_ignores_invalid_samples() -> None:
    outputs = [says(1), INVALID, says(2)]
    backend = ScriptedBackend(lambda first, second, k: outputs[k])
    out = pair(make_judge(backend, votes=3))
    assert out.votes == {0: 1, 1: 1}
    assert out.invalid_votes == 1
    assert out.winner is None


def test_no_valid_vote_has_no_winner() -> None:
    backend = ScriptedBackend(always(TRUNCATED))
    out = pair(make_judge(backend, votes=3, swap=True))
    assert out.votes == {0: 0, 1: 0}
    assert out.invalid_votes == 6
    assert out.winner is None
    assert out.position_consistent is None


def test_invalid_votes_count_every_kind_of_missing_verdict() -> None:
    outputs = [TRUNCATED, NO_VERDICT, INVALID, says(1)]
    backend = ScriptedBackend(lambda first, second, k: outputs[k])
    out = pair(make_judge(backend, votes=4))
    assert [j.status for j in out.judgments] == [Status.TRUNCATED, Status.NO_VERDICT, Status.INVALID, Status.OK]
    assert out.invalid_votes == 3
    assert out.votes == {0: 1, 1: 0}
    assert out.winner == 0


# ----------------------------------------------------------------------------- swap / position consistency


def test_first_position_bias_is_inconsistent_and_undecided() -> None:
    backend = ScriptedBackend(prefer_first)
    out = pair(make_judge(backend, swap=True))
    assert sorted(backend.pairs_requested()) == sorted([(BAD, GOOD, 1), (GOOD, BAD, 1)])
    assert out.votes == {0: 1, 1: 1}
    assert out.winner is None
    assert out.position_consistent is False


def test_judge_that_prefers_a_text_is_position_consistent() -> None:
    backend = ScriptedBackend(prefer_text(GOOD))
    out = pair(make_judge(backend, swap=True))
    assert out.votes == {0: 0, 1: 2}
    assert out.winner == 1
    assert out.position_consistent is True


def test_consistency_is_none_when_one_order_has_no_majority() -> None:
    def script(first: str, second: str, k: int) -> str:
        if first == BAD:  # forward order: split 1-1
            return says(1 + k % 2)
        return prefer_text(GOOD)(first, second, k)

    backend = ScriptedBackend(script)
    out = pair(make_judge(backend, votes=2, swap=True))
    assert out.votes == {0: 1, 1: 3}
    assert out.winner == 1
    assert out.position_consistent is None


def test_consistency_is_none_when_one_order_is_all_invalid() -> None:
    def script(first: str, second: str, k: int) -> str:
        return TRUNCATED if first == BAD else says(1)

    out = pair(make_judge(ScriptedBackend(script), swap=True))
    assert out.votes == {0: 0, 1: 1}
    assert out.invalid_votes == 1
    assert out.winner == 1
    assert out.position_consistent is None


def test_swap_outcome_is_reported_for_the_requested_pair_order() -> None:
    backend = ScriptedBackend(prefer_text(GOOD))
    out = pair(make_judge(backend, swap=True), ITEM, 1, 0)
    assert (out.i, out.j) == (1, 0)
    assert out.winner == 1
    assert out.votes == {1: 2, 0: 0}
    # without swap, i is shown first
    backend = ScriptedBackend(prefer_text(GOOD))
    pair(make_judge(backend), ITEM, 1, 0)
    assert backend.pairs_requested() == [(GOOD, BAD, 1)]


# ----------------------------------------------------------------------------- judgment fields


def test_judgment_fields_map_verdicts_back_to_response_indices() -> None:
    backend = ScriptedBackend(prefer_text(GOOD), chunk=4)
    out = pair(make_judge(backend, votes=3, swap=True, sampling=Sampling(seed=11)))
    forward = [j for j in out.judgments if (j.a, j.b) == (0, 1)]
    backward = [j for j in out.judgments if (j.a, j.b) == (1, 0)]
    assert len(forward) == len(backward) == 3
    assert [j.sample for j in forward] == [0, 1, 2]
    assert [j.sample for j in backward] == [0, 1, 2]
    text = says(2)
    for j in forward:
        assert j.verdict is Verdict.B  # GOOD was shown second
        assert j.lenient_verdict is Verdict.B
        assert j.winner == 1
        assert j.status is Status.OK
        assert j.reasoning == REASONING
        assert j.answer == "\n\n\\boxed{Assistant 2}"
        assert j.finish_reason == "stop"
        assert j.completion_tokens == -(-len(text) // 4)  # one token per chunk
        assert j.error is None
        assert j.seed == seed_of(11, ITEM.id, 0, 1)  # the request's seed (this backend records it on each sample)
        assert j.latency_s >= 0
        assert j.ttft_s is not None
    for j in backward:
        assert j.verdict is Verdict.A  # GOOD was shown first
        assert j.winner == 1
        assert j.status is Status.OK
    d = forward[0].to_dict()
    assert d["verdict"] == "B" and d["winner"] == 1 and d["status"] == "ok"
    assert out.to_dict()["votes"] == {"0": 0, "1": 6}


@pytest.mark.parametrize(
    ("output", "status", "verdict", "lenient", "finish"),
    [
        (says(1), Status.OK, Verdict.A, Verdict.A, "stop"),
        (says(2), Status.OK, Verdict.B, Verdict.B, "stop"),
        (TRUNCATED, Status.TRUNCATED, None, None, "length"),
        (NO_VERDICT, Status.NO_VERDICT, None, None, "stop"),
        (INVALID, Status.INVALID, None, None, "stop"),
        ("ok.</think>\\boxed{\\text{Assistant 2}}", Status.INVALID, None, Verdict.B, "stop"),
        ("<think>I repeat the tag.</think>\\boxed{Assistant 1}", Status.OK, Verdict.A, Verdict.A, "stop"),
        ("a</think>\\boxed{Assistant 2} no, \\boxed{Assistant 1}", Status.OK, Verdict.A, Verdict.A, "stop"),
        ("\\boxed{Assistant 1} before closing</think>nothing", Status.NO_VERDICT, None, None, "stop"),
    ],
)
def test_judgment_status_from_the_real_parser(
    output: str, status: Status, verdict: Verdict | None, lenient: Verdict | None, finish: str
) -> None:
    out = pair(make_judge(ScriptedBackend(always(output), chunk=3)))
    (j,) = out.judgments
    assert j.status is status
    assert j.verdict is verdict
    assert j.lenient_verdict is lenient
    assert j.finish_reason == finish
    assert j.winner == {Verdict.A: 0, Verdict.B: 1, None: None}[verdict]
    assert out.invalid_votes == (0 if verdict else 1)


def test_reasoning_and_answer_are_split_across_chunk_boundaries() -> None:
    for chunk in (1, 2, 3, 7):
        out = pair(make_judge(ScriptedBackend(always(says(2)), chunk=chunk)))
        (j,) = out.judgments
        assert j.reasoning == REASONING
        assert j.answer == "\n\n\\boxed{Assistant 2}"
        assert j.status is Status.OK


# ----------------------------------------------------------------------------- adaptive


def test_adaptive_consistent_judge_stops_after_unanimous_first_round() -> None:
    backend = ScriptedBackend(prefer_text(GOOD))
    out = pair(make_judge(backend, adaptive=True, swap=True, budget=8, margin=2))
    assert out.samples_spent == 2
    assert len(out.judgments) == 2
    assert out.winner == 1
    assert out.votes == {0: 0, 1: 2}
    assert out.position_consistent is True
    assert "unanimous" in (out.adaptive_reason or "")
    assert sorted(backend.pairs_requested()) == sorted([(BAD, GOOD, 1), (GOOD, BAD, 1)])


def test_adaptive_split_judge_spends_the_whole_budget() -> None:
    backend = ScriptedBackend(prefer_first)  # each round splits 1-1
    out = pair(make_judge(backend, adaptive=True, swap=True, budget=8, margin=2))
    assert out.samples_spent == 8
    assert len(backend.calls) == 8
    assert all(c.n == 1 for c in backend.calls)
    assert out.votes == {0: 4, 1: 4}
    assert out.winner is None
    assert out.position_consistent is False
    reason = out.adaptive_reason or ""
    assert "budget" in reason and "8" in reason
    assert "4-4" in reason
    forward = [j.sample for j in out.judgments if j.a == 0]
    backward = [j.sample for j in out.judgments if j.a == 1]
    assert forward == [0, 1, 2, 3]
    assert backward == [0, 1, 2, 3]


def test_adaptive_disagree_then_agree_stops_on_the_margin() -> None:
    seen: dict[tuple[str, str], int] = {}

    def script(first: str, second: str, k: int) -> str:
        count = seen.get((first, second), 0)
        seen[(first, second)] = count + 1
        if count == 0:
            return says(1)  # round 1: position bias, 1-1
        return prefer_text(GOOD)(first, second, k)

    backend = ScriptedBackend(script)
    out = pair(make_judge(backend, adaptive=True, swap=True, budget=8, margin=2, sampling=Sampling(seed=7)))
    assert out.samples_spent == 4
    assert out.votes == {0: 1, 1: 3}
    assert out.winner == 1
    reason = out.adaptive_reason or ""
    assert "lead of 2" in reason
    assert "4 samples" in reason
    assert "budget" not in reason
    # each round is seeded apart: the order's seed + sample number
    f, b = seed_of(7, ITEM.id, 0, 1), seed_of(7, ITEM.id, 1, 0)
    assert sorted(c.seed for c in backend.calls) == sorted([f, f + 1, b, b + 1])
    seeds = sorted((j.a, j.sample, j.seed) for j in out.judgments)
    assert seeds == [(0, 0, f), (0, 1, f + 1), (1, 0, b), (1, 1, b + 1)]


def test_adaptive_invalid_first_round_is_not_unanimous() -> None:
    seen: dict[tuple[str, str], int] = {}

    def script(first: str, second: str, k: int) -> str:
        count = seen.get((first, second), 0)
        seen[(first, second)] = count + 1
        if count == 0 and first == BAD:
            return TRUNCATED
        return prefer_text(GOOD)(first, second, k)

    out = pair(make_judge(ScriptedBackend(script), adaptive=True, swap=True, budget=8, margin=2))
    # round 1: 1 valid vote + 1 truncated; round 2: 3-0 -> lead 3 >= 2
    assert out.samples_spent == 4
    assert out.invalid_votes == 1
    assert out.votes == {0: 0, 1: 3}
    assert "lead of 3" in (out.adaptive_reason or "")


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 7])
def test_adaptive_odd_or_small_budget_is_never_exceeded(budget: int) -> None:
    backend = ScriptedBackend(prefer_first)
    out = pair(make_judge(backend, adaptive=True, swap=True, budget=budget, margin=2))
    assert out.samples_spent <= budget
    assert len(out.judgments) == out.samples_spent
    assert sum(c.n for c in backend.calls) == out.samples_spent
    if budget >= 2:
        assert out.samples_spent == budget
        assert "budget" in (out.adaptive_reason or "")


def test_adaptive_budget_three_plays_a_half_round() -> None:
    backend = ScriptedBackend(prefer_first)
    out = pair(make_judge(backend, adaptive=True, swap=True, budget=3, margin=2))
    assert out.samples_spent == 3
    assert sorted((j.a, j.sample) for j in out.judgments) == [(0, 0), (0, 1), (1, 0)]
    assert out.votes == {0: 2, 1: 1}
    assert out.winner == 0  # a one-vote lead is still the majority
    reason = out.adaptive_reason or ""
    assert "budget of 3" in reason and "2-1" in reason


def test_adaptive_without_swap_starts_with_two_samples_of_the_one_order() -> None:
    # one sample alone is always "unanimous": the first round without swap is two samples, so adaptive
    # compute can see a split (before, every valid first sample stopped the pair at one vote)
    backend = ScriptedBackend(prefer_text(GOOD))
    out = pair(make_judge(backend, adaptive=True, swap=False, budget=8, margin=2))
    assert backend.pairs_requested() == [(BAD, GOOD, 1), (BAD, GOOD, 1)]
    assert sorted(jd.sample for jd in out.judgments) == [0, 1]
    assert out.samples_spent == 2
    assert out.winner == 1
    assert out.position_consistent is None
    assert "first round unanimous (2 samples)" in (out.adaptive_reason or "")


def test_adaptive_without_swap_goes_on_when_the_first_two_samples_split() -> None:
    outputs = {0: says(1), 1: says(2)}  # then response 1 (GOOD, shown second) from sample 2 on

    out = pair(make_judge(ScriptedBackend(lambda first, second, k: says(2)), adaptive=True, budget=8, margin=2))
    assert out.samples_spent == 2  # agreeing: stop

    seen = {"n": 0}

    def script(first: str, second: str, k: int) -> str:
        n = seen["n"]
        seen["n"] += 1
        return outputs.get(n, says(2))

    out = pair(make_judge(ScriptedBackend(script), adaptive=True, budget=8, margin=2))
    # 1-1 after round 1; 1-2, 1-3: a lead of 2 after 4 samples
    assert out.samples_spent == 4 and out.votes == {0: 1, 1: 3}
    assert "lead of 2 votes reached after 4 samples" in (out.adaptive_reason or "")


def test_adaptive_without_swap_keeps_sampling_the_same_order() -> None:
    backend = ScriptedBackend(always(TRUNCATED))
    out = pair(make_judge(backend, adaptive=True, swap=False, budget=3, margin=2))
    assert backend.pairs_requested() == [(BAD, GOOD, 1)] * 3
    assert [j.sample for j in out.judgments] == [0, 1, 2]
    assert out.invalid_votes == 3
    assert out.winner is None
    assert "budget of 3" in (out.adaptive_reason or "")


# ----------------------------------------------------------------------------- errors


def test_backend_exception_becomes_error_judgments_for_that_pair_only() -> None:
    item = Item("e1", QUERY, ("alpha", "beta", "gamma is longest"))

    def fails(first: str, second: str, k: int) -> bool:
        return {first, second} == {"alpha", "beta"}

    backend = RaisingBackend(prefer_longest, fails)
    result = asyncio.run(judge_item(make_judge(backend, swap=True), item, "round-robin"))
    by_pair = {(p.i, p.j): p for p in result.pairs}
    broken = by_pair[(0, 1)]
    assert broken.winner is None
    assert broken.invalid_votes == 2
    assert len(broken.judgments) == 2
    for j in broken.judgments:
        assert j.status is Status.ERROR
        assert j.verdict is None
        assert j.error is not None
        assert "RuntimeError" in j.error and "boom on" in j.error
        assert j.finish_reason == "error"
    for key in ((0, 2), (1, 2)):
        p = by_pair[key]
        assert p.winner == 2
        assert all(j.status is Status.OK for j in p.judgments)
    assert result.winner == 2
    assert result.ranking[0] == 2


def test_exception_after_some_samples_keeps_the_finished_ones() -> None:
    backend = RaisingBackend(always(says(2)), lambda first, second, k: k == 2)
    out = pair(make_judge(backend, votes=4))
    assert [j.status for j in out.judgments] == [Status.OK, Status.OK, Status.ERROR, Status.ERROR]
    assert [j.sample for j in out.judgments] == [0, 1, 2, 3]
    assert out.votes == {0: 0, 1: 2}
    assert out.invalid_votes == 2
    assert out.winner == 1
    assert all("boom on" in (j.error or "") for j in out.judgments[2:])


def test_failing_item_does_not_stop_other_items() -> None:
    items = [
        Item("ok-1", "q ok", ("short", "much longer")),
        Item("bad", "q bad", ("x", "yy")),
        Item("ok-2", "q ok two", ("longer one", "tiny")),
    ]
    backend = RaisingBackend(prefer_longest, lambda first, second, k: first in ("x", "yy"))

    async def run() -> list[ItemResult]:
        return [r async for r in judge_items(make_judge(backend, swap=True), items)]

    results = asyncio.run(run())
    assert [r.id for r in results] == ["ok-1", "bad", "ok-2"]
    assert results[0].winner == 1
    assert results[2].winner == 0
    assert results[1].winner is None
    assert results[1].ranking == ()
    assert all(j.status is Status.ERROR for j in results[1].pairs[0].judgments)


def test_record_with_error_becomes_an_error_judgment() -> None:
    backend = ErrorRecordBackend(always(says(1)), lambda first, second, k: k == 1)
    out = pair(make_judge(backend, votes=3))
    statuses = [j.status for j in out.judgments]
    assert statuses == [Status.OK, Status.ERROR, Status.OK]
    bad = out.judgments[1]
    assert bad.error == "upstream said 500"
    assert bad.verdict is None and bad.winner is None
    assert bad.finish_reason == "error"
    # the text still streamed, and is kept, but never votes
    assert bad.reasoning == REASONING
    assert out.votes == {0: 2, 1: 0}
    assert out.invalid_votes == 1


def test_missing_record_is_an_error() -> None:
    class ForgetfulBackend(ScriptedBackend):
        async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
            async for ev in super().stream(request):
                if isinstance(ev, Delta) or ev.sample != 1:
                    yield ev

    out = pair(make_judge(ForgetfulBackend(always(says(2))), votes=2))
    assert [j.status for j in out.judgments] == [Status.OK, Status.ERROR]
    assert "without a result" in (out.judgments[1].error or "")


# ----------------------------------------------------------------------------- observer


def test_observer_sees_deltas_before_judgments_and_one_call_per_sample() -> None:
    events: list[tuple[str, object]] = []

    def on_delta(update: StreamUpdate) -> None:
        events.append(("delta", update))

    def on_judgment(item_id: str, judgment: Judgment) -> None:
        events.append(("judgment", (item_id, judgment)))

    backend = ScriptedBackend(prefer_text(GOOD), chunk=3)
    judge = make_judge(backend, votes=2, swap=True, observer=Observer(on_delta, on_judgment))
    out = pair(judge)

    judgments = [payload for kind, payload in events if kind == "judgment"]
    assert len(judgments) == 4 == out.samples_spent
    assert all(item_id == "q1" for item_id, _ in judgments)  # type: ignore[misc]
    assert sorted((j.a, j.sample) for _, j in judgments) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # type: ignore[misc]

    for a, b in ((0, 1), (1, 0)):
        positions_delta = [
            k
            for k, (kind, p) in enumerate(events)
            if kind == "delta" and (p.a, p.b) == (a, b)  # type: ignore[union-attr]
        ]
        positions_judgment = [
            k
            for k, (kind, p) in enumerate(events)
            if kind == "judgment" and (p[1].a, p[1].b) == (a, b)  # type: ignore[index]
        ]
        assert positions_delta and positions_judgment
        assert max(positions_delta) < min(positions_judgment)

    # the streamed text adds up to what each judgment holds
    for _, j in judgments:  # type: ignore[misc]
        updates = [
            p.delta  # type: ignore[union-attr]
            for kind, p in events
            if kind == "delta" and (p.a, p.b) == (j.a, j.b) and p.delta.sample == j.sample  # type: ignore[union-attr]
        ]
        assert all(u.item_id == "q1" for kind, u in events if kind == "delta")  # type: ignore[union-attr]
        assert "".join(d.reasoning for d in updates) == j.reasoning
        assert "".join(d.answer for d in updates) == j.answer


def test_observer_called_once_per_sample_in_adaptive_mode() -> None:
    calls: list[Judgment] = []
    judge = make_judge(
        ScriptedBackend(prefer_first),
        adaptive=True,
        swap=True,
        budget=6,
        observer=Observer(on_judgment=lambda item_id, j: calls.append(j)),
    )
    out = pair(judge)
    assert len(calls) == out.samples_spent == 6
    assert sorted((j.a, j.sample) for j in calls) == sorted((j.a, j.sample) for j in out.judgments)


def test_observer_is_told_about_error_judgments_too() -> None:
    calls: list[Judgment] = []
    backend = RaisingBackend(prefer_first, lambda first, second, k: True)
    judge = make_judge(backend, votes=2, observer=Observer(on_judgment=lambda item_id, j: calls.append(j)))
    pair(judge)
    assert [j.status for j in calls] == [Status.ERROR, Status.ERROR]


def test_stream_updates_carry_the_judgments_sample_number_in_adaptive_mode() -> None:
    updates: list[StreamUpdate] = []
    judge = make_judge(
        ScriptedBackend(prefer_first, chunk=3),  # flips with the order: several rounds
        adaptive=True,
        swap=True,
        budget=6,
        observer=Observer(on_delta=updates.append),
    )
    out = pair(judge)
    assert max(j.sample for j in out.judgments) > 0
    for j in out.judgments:
        mine = [u.delta for u in updates if (u.a, u.b, u.sample) == (j.a, j.b, j.sample)]
        assert "".join(d.reasoning for d in mine) == j.reasoning


def test_a_failing_observer_never_changes_the_judgment() -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("display went away")

    quiet = pair(make_judge(ScriptedBackend(prefer_first), votes=2))
    noisy = pair(make_judge(ScriptedBackend(prefer_first), votes=2, observer=Observer(broken, broken)))
    assert [j.status for j in noisy.judgments] == [j.status for j in quiet.judgments]
    assert noisy.winner == quiet.winner
    assert all(j.error is None for j in noisy.judgments)


# ----------------------------------------------------------------------------- runner


def test_resolve_strategy() -> None:
    assert resolve_strategy("auto", 2) == "pair"
    assert resolve_strategy("auto", 3) == "knockout"
    assert resolve_strategy("round-robin", 2) == "round-robin"
    with pytest.raises(ValueError, match="exactly 2"):
        resolve_strategy("pair", 3)
    with pytest.raises(ValueError, match="unknown strategy"):
        resolve_strategy("swiss", 4)


def test_auto_on_two_responses_is_a_pair() -> None:
    backend = ScriptedBackend(prefer_text(GOOD), model="judge-7b")
    result = asyncio.run(judge_item(make_judge(backend, swap=True), ITEM, "auto"))
    assert result.strategy == "pair"
    assert result.winner == 1
    assert result.ranking == (1, 0)
    assert len(result.pairs) == 1
    assert result.votes == {0: 0, 1: 2}
    assert result.template == "rrm"
    assert result.template_version == "2"
    assert result.backend == "scripted"
    assert result.model == "judge-7b"


def test_pair_winner_zero_ranks_zero_first() -> None:
    backend = ScriptedBackend(prefer_text(BAD))
    result = asyncio.run(judge_item(make_judge(backend), ITEM, "pair"))
    assert result.winner == 0
    assert result.ranking == (0, 1)


FOUR = Item("four", "Describe a cat.", ("A cat.", "A small cat purrs.", "Cat", "A cat is a small furry animal."))
LONGEST = 3
BY_LENGTH = (3, 1, 0, 2)


def test_auto_on_four_responses_is_a_knockout() -> None:
    backend = ScriptedBackend(prefer_longest)
    result = asyncio.run(judge_item(make_judge(backend), FOUR, "auto"))
    assert result.strategy == "knockout"
    assert len(result.pairs) == 3  # n - 1 comparisons
    assert len(backend.calls) == 3
    assert result.winner == LONGEST
    assert result.ranking[0] == LONGEST
    assert sorted(result.ranking) == [0, 1, 2, 3]
    assert len(result.bracket) == 2  # ceil(log2 4) rounds
    assert result.bracket[-1][0]["winner"] == LONGEST
    assert result.template == "rrm" and result.template_version == "2"
    assert result.backend == "scripted" and result.model == "scripted-model"


@pytest.mark.parametrize("seed", [None, 0, 1, 2, 3])
def test_knockout_winner_is_independent_of_the_bracket(seed: int | None) -> None:
    items = [Item(f"k{n}", "q", tuple("x" * (k + 1) for k in reversed(range(n)))) for n in (3, 5, 6)]
    for item in items:
        backend = ScriptedBackend(prefer_longest)
        result = asyncio.run(judge_item(make_judge(backend, swap=True), item, "knockout", bracket_seed=seed))
        assert result.winner == 0  # the longest text is first
        assert len(result.pairs) == len(item.responses) - 1


def test_round_robin_ranks_by_the_oracle_and_reports_ratings() -> None:
    backend = ScriptedBackend(prefer_longest)
    result = asyncio.run(judge_item(make_judge(backend, swap=True), FOUR, "round-robin"))
    assert result.strategy == "round-robin"
    assert len(result.pairs) == 6
    assert len(backend.calls) == 12  # both orders of each pair
    assert set(result.ratings) == {"elo", "bradley_terry", "wins", "official_elo"}  # the paper's Elo too
    for table in result.ratings.values():
        assert set(table) == {0, 1, 2, 3}
    assert result.ratings["wins"] == {3: 3.0, 1: 2.0, 0: 1.0, 2: 0.0}
    assert result.winner == LONGEST
    assert result.ranking == BY_LENGTH
    bt = result.ratings["bradley_terry"]
    assert bt[3] > bt[1] > bt[0] > bt[2]
    assert result.bracket == ()


@pytest.mark.parametrize("strategy", ["pair", "knockout", "round-robin"])
def test_all_truncated_decides_nothing(strategy: str) -> None:
    item = ITEM if strategy == "pair" else FOUR
    backend = ScriptedBackend(always(TRUNCATED))
    result = asyncio.run(judge_item(make_judge(backend, swap=True), item, strategy))
    assert result.winner is None
    assert result.ranking == ()
    assert result.pairs
    assert all(p.winner is None for p in result.pairs)
    assert all(j.status is Status.TRUNCATED for p in result.pairs for j in p.judgments)


def test_round_robin_with_tied_top_two_has_no_winner() -> None:
    item = Item("tie", "q", ("a", "b"))
    result = asyncio.run(judge_item(make_judge(ScriptedBackend(prefer_first), swap=True), item, "round-robin"))
    assert result.pairs[0].winner is None
    assert result.winner is None


def test_pair_strategy_with_three_responses_raises() -> None:
    item = Item("three", "q", ("a", "b", "c"))
    backend = ScriptedBackend(prefer_first)
    with pytest.raises(ValueError, match="exactly 2"):
        asyncio.run(judge_item(make_judge(backend), item, "pair"))
    assert backend.calls == []


def test_judge_items_yields_in_input_order_when_later_items_finish_first() -> None:
    items = [Item(f"item-{k}", f"query {k}", (f"r{k}", f"longer r{k}")) for k in range(4)]
    finished: list[str] = []

    def delay(query: str, first: str, second: str) -> float:
        return 0.02 if query == "query 0" else 0.0

    backend = ScriptedBackend(prefer_longest, delay=delay)
    observer = Observer(on_judgment=lambda item_id, j: finished.append(item_id))
    judge = make_judge(backend, concurrency=4, observer=observer)

    async def run() -> list[ItemResult]:
        return [r async for r in judge_items(judge, items)]

    results = asyncio.run(run())
    assert [r.id for r in results] == [it.id for it in items]
    assert finished[-1] == "item-0"  # the first item finished last ...
    assert finished.index("item-0") > finished.index("item-3")  # ... yet was yielded first
    assert all(r.winner == 1 and r.ranking == (1, 0) for r in results)


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_judge_items_respects_the_judge_concurrency(concurrency: int) -> None:
    items = [Item(f"c{k}", f"q{k}", ("a", "bb", "ccc", "dddd")) for k in range(3)]
    backend = ScriptedBackend(prefer_longest, delay=lambda q, f, s: 0.001)
    judge = make_judge(backend, swap=True, concurrency=concurrency)

    async def run() -> list[ItemResult]:
        return [r async for r in judge_items(judge, items, "round-robin")]

    results = asyncio.run(run())
    assert backend.max_active <= concurrency
    assert backend.max_active == concurrency  # and the limit is actually used
    assert len(backend.calls) == 3 * 12
    assert all(r.winner == 3 for r in results)


def test_judge_defaults_to_the_backend_concurrency() -> None:
    backend = ScriptedBackend(prefer_longest, delay=lambda q, f, s: 0.001)
    backend.concurrency = 3
    judge = make_judge(backend, swap=True)
    asyncio.run(judge_item(judge, FOUR, "round-robin"))
    assert backend.max_active == 3


def test_judge_items_on_empty_input_yields_nothing() -> None:
    async def run() -> list[ItemResult]:
        return [r async for r in judge_items(make_judge(ScriptedBackend(prefer_first)), [])]

    assert asyncio.run(run()) == []


def test_judge_items_propagates_a_strategy_error() -> None:
    items = [Item("fine", "q", ("a", "b")), Item("three", "q", ("a", "b", "c"))]

    async def run() -> list[str]:
        got = []
        async for r in judge_items(make_judge(ScriptedBackend(prefer_first)), items, "pair"):
            got.append(r.id)
        return got

    with pytest.raises(ValueError, match="exactly 2"):
        asyncio.run(run())


@pytest.mark.parametrize("limit", [1, 2])
def test_judge_items_bounds_the_items_in_flight(limit: int) -> None:
    items = [Item(f"f{k}", f"q{k}", ("a", "bb")) for k in range(8)]
    backend = ScriptedBackend(prefer_longest, delay=lambda q, f, s: 0.005)
    judge = make_judge(backend, concurrency=100)  # one request per item: streams open == items open

    async def run() -> list[ItemResult]:
        return [r async for r in judge_items(judge, items, items_in_flight=limit)]

    assert [r.id for r in asyncio.run(run())] == [it.id for it in items]
    assert backend.max_active <= limit
