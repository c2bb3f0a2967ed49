"""Budget forcing (Compute.budget_mode "force"): a judgment that reaches its thinking budget is closed
and answers within the answer budget, so its verdict survives; cut-off stays the default.

The engine logic runs against a scripted backend that generates one token per word up to the request's
``max_tokens`` (the real Judge, RRM prompt and parser); storage against real SQLite and PostgreSQL; one
slow test through the transformers backend with the demo judge, whose long reasoning is cut off at a
budget between its two lengths (docs/demo-judge.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rrm_ui.backends.base import Backend, Event, SampleTracker
from rrm_ui.cli import build_parser
from rrm_ui.cli.options import compute_from
from rrm_ui.domain import Compute, GenRecord, GenRequest, Item, ItemResult, PairOutcome, Sampling, Status, Verdict
from rrm_ui.engine.judge import Judge, Observer, StreamUpdate
from rrm_ui.protocol.rrm import RRM_FORMAT
from rrm_ui.storage import Repository, make_engine, upgrade
from tests.test_demo_judge import demo_backends as demo_backends  # noqa: PLC0414 - the session fixture, by name
from tests.test_engine import BAD, GOOD, QUERY, shown
from tests.test_storage import dataset

ITEM = Item("q1", QUERY, (BAD, GOOD))
WORD = "think "  # one token per word


class Thinker(Backend):
    """Thinks ``words(first, second)`` words (one token each) then closes and boxes ``Assistant 2``; stops at
    the request's ``max_tokens``. A continuation request (``continues``) answers ``answer`` in one token
    per character chunk of 4."""

    name = "thinker"
    concurrency = 4

    def __init__(self, words: int | dict[str, int], *, continues: bool = True, answer: str = "\\boxed{Assistant 1}",
                 fail: str | None = None) -> None:  # fmt: skip
        super().__init__("thinker-model")
        self.words = words
        self.continues = continues
        self.answer = answer
        self.fail = fail
        self.requests: list[GenRequest] = []

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        s = request.sampling
        _, first, _ = shown(request)
        for k in range(request.n):
            seed = None if s.seed is None else s.seed + k
            if request.continuation is not None:
                t = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=seed, answering=True)
                if self.fail:
                    yield t.finish("error", error=self.fail)
                    continue
                chunks = [self.answer[i : i + 4] for i in range(0, len(self.answer), 4)]
                for c in chunks[: s.max_tokens]:
                    if (d := t.add_text(c, 1)) is not None:
                        yield d
                yield t.finish("stop" if len(chunks) <= s.max_tokens else "length")
                continue
            t = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=seed)
            n = self.words if isinstance(self.words, int) else self.words[first]
            text = [WORD] * n + ["</think>", "\n\n\\boxed{Assistant 2}"]
            for piece in text[: s.max_tokens]:
                if (d := t.add_text(piece, 1)) is not None:
                    yield d
                await asyncio.sleep(0)
            yield t.finish("stop" if len(text) <= s.max_tokens else "length")


def judge(backend: Backend, budget: int = 10, observer: Observer | None = None, **compute: object) -> Judge:
    return Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=budget, seed=4), compute=Compute(**compute),  # type: ignore[arg-type]
                 observer=observer)  # fmt: skip


def run(j: Judge, item: Item = ITEM) -> PairOutcome:
    return asyncio.run(j.judge_pair(item, 0, 1))


def test_cut_off_is_the_default_and_loses_the_verdict() -> None:
    assert Compute().budget_mode == "cutoff" and Sampling().max_tokens == 8192  # the paper's default
    backend = Thinker(50)
    out = run(judge(backend, votes=2))
    assert [j.status for j in out.judgments] == [Status.TRUNCATED] * 2
    assert all(not j.forced_close and j.forced_at is None and j.verdict is None for j in out.judgments)
    assert all(r.continuation is None for r in backend.requests) and len(backend.requests) == 1
    assert out.invalid_votes == 2 and out.winner is None


def test_force_closes_at_the_budget_and_the_verdict_survives() -> None:
    backend = Thinker(50)
    seen: list[StreamUpdate] = []
    out = run(judge(backend, budget=10, observer=Observer(on_delta=seen.append), votes=2, budget_mode="force",
                    answer_budget=16))  # fmt: skip
    first, *follow = backend.requests
    assert first.n == 2 and first.continuation is None and len(follow) == 2
    for j in out.judgments:
        assert j.status is Status.OK and j.verdict is Verdict.A  # the continuation boxed Assistant 1
        assert j.forced_close and j.forced_at == 10  # closed after the 10 thinking tokens of the budget
        assert j.reasoning == WORD * 10 + "\n"  # the close's text before </think> ends the reasoning
        assert j.answer == "\\boxed{Assistant 1}"
        assert j.completion_tokens == 10 + -(-len(backend.answer) // 4)  # both steps' generated tokens
        assert j.reasoning_tokens == 10 and j.finish_reason == "stop"
        assert j.seed == first.sampling.seed + j.sample
    assert out.winner == 0 and out.invalid_votes == 0
    # the second step: the same prompt, the sample's reasoning and the close, the answer budget, its seed
    for r in follow:
        assert r.messages == first.messages and r.n == 1
        assert r.continuation == WORD * 10 + "\n</think>"
        assert r.sampling == Sampling(0.6, 1.0, 16, r.sampling.seed)
    assert sorted(r.sampling.seed for r in follow) == [first.sampling.seed, first.sampling.seed + 1]
    # the live text shows the forced close and the answer under the sample's number
    text = {k: "".join(u.delta.reasoning + u.delta.answer for u in seen if u.sample == k) for k in (0, 1)}
    assert text[0] == text[1] == WORD * 10 + "\n" + "\\boxed{Assistant 1}"
    assert {j.to_dict()["forced_close"] for j in out.judgments} == {True}


def test_force_leaves_natural_closes_alone_and_works_in_both_orders() -> None:
    backend = Thinker({BAD: 3, GOOD: 50})  # shown first: BAD closes by itself; GOOD first runs out
    out = run(judge(backend, budget=10, swap=True, budget_mode="force", close_text="\n</think>\n\n"))
    by_order = {(j.a, j.b): j for j in out.judgments}
    natural, forced = by_order[(0, 1)], by_order[(1, 0)]
    assert natural.status is Status.OK and not natural.forced_close and natural.verdict is Verdict.B
    assert forced.status is Status.OK and forced.forced_close and forced.forced_at == 10
    assert forced.answer == "\n\n\\boxed{Assistant 1}"  # the text after </think> in close_text starts it
    assert [r.continuation is not None for r in backend.requests].count(True) == 1


def test_an_answer_budget_too_small_still_ends_without_verdict_but_marked_forced() -> None:
    out = run(judge(Thinker(50), budget_mode="force", answer_budget=2))
    (j,) = out.judgments
    assert j.forced_close and j.finish_reason == "length" and j.status is Status.NO_VERDICT


def test_a_backend_that_cannot_continue_keeps_the_cut_off() -> None:
    backend = Thinker(50, continues=False)
    (j,) = run(judge(backend, budget_mode="force")).judgments
    assert j.status is Status.TRUNCATED and not j.forced_close and len(backend.requests) == 1


def test_a_failed_second_step_is_the_samples_error() -> None:
    (j,) = run(judge(Thinker(50, fail="server said no"), budget_mode="force")).judgments
    assert j.status is Status.ERROR and j.error == "server said no" and j.forced_close


def test_compute_fields_validate_store_as_before_and_come_from_flags() -> None:
    with pytest.raises(ValueError, match="budget_mode"):
        Compute(budget_mode="stretch")
    with pytest.raises(ValueError, match="answer_budget"):
        Compute(budget_mode="force", answer_budget=0)
    with pytest.raises(ValueError, match="close_text"):
        Compute(close_text="done")
    # a cut-off run's compute reads as before budget forcing existed (its columns, its run name)
    assert Compute().to_dict() == {"votes": 1, "swap": False, "adaptive": False, "budget": 8, "margin": 2}
    forced = Compute(budget_mode="force", answer_budget=32)
    assert forced.to_dict()["budget_mode"] == "force" and forced.to_dict()["answer_budget"] == 32
    assert "close_text" not in forced.to_dict() and Compute(**forced.to_dict()) == forced
    args = build_parser().parse_args(["judge", "x.jsonl", "--out", "o", "--budget-mode", "force", "--answer-budget",
                                      "32", "--close-text", "\\n</think>\\n\\n"])  # fmt: skip
    assert compute_from(args) == Compute(budget_mode="force", answer_budget=32, close_text="\n</think>\n\n")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["judge", "x.jsonl", "--out", "o", "--budget-mode", "stretch"])


def test_forced_closes_are_stored_and_read_back(db_url: str) -> None:
    repo = Repository(make_engine(db_url))
    upgrade(repo.engine)
    out = run(judge(Thinker({BAD: 3, GOOD: 50}), swap=True, budget_mode="force"))
    info = repo.create_dataset(dataset(n=1))
    stored = repo.items(info.id)[0]
    run_info, _ = repo.get_or_create_run(info.id, "forced", backend="thinker", model="m", strategy="pair")
    res = ItemResult(stored.item.id, "pair", out.winner, (), (out,), "rrm", "2", "m", "thinker")
    assert repo.save_result(run_info.id, stored.db_id, res)
    back = repo.pair_judgments(run_info.id, stored.db_id, 0, 1)
    assert sorted((j.a, j.forced_close, j.forced_at) for j in back) == [(0, False, None), (1, True, 10)]
    frame = repo.frame("judgments")
    assert sorted(frame["forced_close"].astype(bool)) == [False, True]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformers", "vllm", "openai"])
def test_the_demo_judge_keeps_its_verdict_when_forced_where_cut_off_truncates(
    name: str,
    demo_backends: dict[str, Backend],
    demo_judge: Path,
    loop,  # noqa: ANN001
) -> None:
    """Through each backend (the openai one against a real vLLM server): at a budget between the demo
    judge's two lengths its long reasoning is cut off (truncated, no verdict); forced, the long
    judgments close at the budget and box a verdict, parsed ``ok`` by the official rule."""
    from rrm_ui.engine.runner import judge_items

    info = json.loads((demo_judge / "demo-judge.json").read_text())
    short, long = info["completion_tokens"]["short"], info["completion_tokens"]["long"]
    budget = (short + long) // 2
    items = [Item(f"i{k}", f"question {k}?", (f"answer {k}", f"other answer {k}")) for k in range(24)]
    backend = demo_backends[name]
    # in-process vLLM forces the close itself (thinking_token_budget, one request); the others take two steps
    assert backend.native_close == ("\n</think>" if name == "vllm" else None)

    def judged(**compute: object) -> list:
        sampling = Sampling(max_tokens=budget, seed=2)
        j = Judge(backend, RRM_FORMAT, sampling=sampling, compute=Compute(votes=2, **compute))  # type: ignore[arg-type]

        async def go() -> list:
            return [jd for r in [r async for r in judge_items(j, items)] for p in r.pairs for jd in p.judgments]

        return loop.run(go(), timeout=600)

    cut = judged()
    forced = judged(budget_mode="force", answer_budget=16, close_text="\n</think>")
    assert len(cut) == len(forced) == 48
    # P(long) at T=0.6 is about 0.2 per sample: none in 48 has a chance of 2e-5
    assert [j for j in cut if j.status is Status.TRUNCATED], "some long reasoning at this budget"
    assert {j.status for j in cut} <= {Status.OK, Status.TRUNCATED}
    assert all(not j.forced_close for j in cut)
    made = [j for j in forced if j.forced_close]
    assert made and all(j.status is Status.OK and j.verdict in (Verdict.A, Verdict.B) for j in made)
    for j in made:
        assert j.forced_at == budget and j.finish_reason == "stop" and j.error is None
        assert j.answer.strip() in {"\\boxed{Assistant 1}", "\\boxed{Assistant 2}"}
        assert j.completion_tokens > budget
    assert {j.status for j in forced} == {Status.OK}  # every judgment now has a verdict


@pytest.mark.slow
def test_transformers_serves_requests_of_different_sampling_at_once(tiny_model: Path, loop) -> None:  # noqa: ANN001
    """Regression: with two samplings waiting at once (a forced close's answer budget beside judgments
    still thinking) the worker took a held row, put it back and took it again, forever."""
    from rrm_ui.backends.hf_transformers import TransformersBackend

    backend = TransformersBackend(str(tiny_model), device="cpu", max_batch=4)
    messages = tuple(RRM_FORMAT.messages("Which?", "One.", "Two."))

    async def one(max_tokens: int, n: int) -> list[int]:
        request = GenRequest(f"r{max_tokens}", messages, Sampling(temperature=1.0, max_tokens=max_tokens), n)
        return [ev.completion_tokens async for ev in backend.stream(request) if isinstance(ev, GenRecord)]

    async def go() -> list[list[int]]:
        await backend.start()
        return list(await asyncio.gather(one(6, 2), one(3, 1), one(6, 1), one(4, 2)))

    try:
        done = loop.run(go(), timeout=120)
    finally:
        loop.run(backend.close())
    assert [len(x) for x in done] == [2, 1, 1, 2]
    assert all(0 < t <= cap for x, cap in zip(done, (6, 3, 6, 4), strict=True) for t in x)


class _Server:
    """A scripted OpenAI-compatible server (loopback HTTP) for the openai backend's second step: chat streams
    reasoning that never closes; ``/tokenize`` gives 3 ids for the messages and 2 for a text; ``/completions``
    streams the answer. ``tokenize`` False: no ``/tokenize`` (404), as a server other than vLLM."""

    def __init__(self, *, tokenize: bool = True) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._json(200, {"data": [{"id": "m", "owned_by": "scripted"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.posts.append((self.path, body))
                if self.path == "/tokenize":
                    if not tokenize:
                        self._json(404, {"detail": "Not Found"})
                    else:
                        self._json(200, {"tokens": [1, 2, 3] if "messages" in body else [7, 8]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                chat = self.path.endswith("/chat/completions")
                pieces = [WORD] * body["max_tokens"] if chat else ["\\boxed{", "Assistant 2}"]
                for p in pieces:
                    choice = {"index": 0, "delta": {"reasoning": p}} if chat else {"index": 0, "text": p}
                    self.wfile.write(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
                end = {"choices": [{"index": 0, "finish_reason": "length" if chat else "stop"}]}
                self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
                self.wfile.flush()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"


@pytest.mark.parametrize("tokenize", [True, False])
def test_the_openai_backend_continues_through_tokenize_and_completions(tokenize: bool) -> None:
    from rrm_ui.backends.openai_http import OpenAIBackend

    server = _Server(tokenize=tokenize)

    async def go() -> PairOutcome:
        backend = OpenAIBackend([server.url], max_retries=0)
        try:
            return await judge(backend, budget=5, budget_mode="force", answer_budget=9).judge_pair(ITEM, 0, 1)
        finally:
            await backend.close()

    try:
        (j,) = asyncio.run(go()).judgments
    finally:
        server.http.shutdown()
    paths = [p for p, _ in server.posts]
    if not tokenize:
        assert paths == ["/v1/chat/completions", "/tokenize"]
        assert j.status is Status.ERROR and j.forced_close and "POST /tokenize" in (j.error or "")
        return
    assert paths == ["/v1/chat/completions", "/tokenize", "/tokenize", "/v1/completions"]
    (_, chat), (_, t1), (_, t2), (_, done) = server.posts
    assert t1["messages"] == chat["messages"] and t1["add_generation_prompt"] is True
    assert t2["prompt"] == WORD * 5 + "\n</think>" and t2["add_special_tokens"] is False
    assert done["prompt"] == [1, 2, 3, 7, 8] and done["max_tokens"] == 9 and "messages" not in done
    assert done["seed"] == chat["seed"]
    assert j.status is Status.OK and j.verdict is Verdict.B and j.forced_close and j.forced_at == 5
    assert j.reasoning == WORD * 5 + "\n" and j.answer == "\\boxed{Assistant 2}"


class NativeThinker(Thinker):
    """Forces the close itself at ``GenRequest.thinking_budget`` and marks ``forced_at``, as vLLM's backend does."""

    native_close = "\n</think>"

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        from dataclasses import replace

        self.requests.append(request)
        s, budget = request.sampling, request.thinking_budget
        assert budget is not None
        t = SampleTracker(0, backend=self.name, model=self.model, sampling=s, seed=s.seed)
        for piece in [WORD] * budget + [self.native_close, "\\boxed{Assistant 1}"]:
            if (d := t.add_text(piece, 1)) is not None:
                yield d
        yield replace(t.finish("stop"), forced_at=budget)


def test_a_backend_that_forces_the_close_itself_gets_one_request() -> None:
    backend = NativeThinker(50)
    (j,) = run(judge(backend, budget=10, budget_mode="force", answer_budget=16)).judgments
    (request,) = backend.requests
    assert request.thinking_budget == 10 and request.sampling.max_tokens == 10 + 16 and request.continuation is None
    assert j.status is Status.OK and j.forced_close and j.forced_at == 10 and j.verdict is Verdict.A
    # another close than the backend's own: the two steps (this backend cannot continue: cut off)
    other = NativeThinker(50)
    other.continues = False
    assert judge(other, budget_mode="force", close_text="</think>")._native_force is False
