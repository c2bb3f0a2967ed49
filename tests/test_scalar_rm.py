"""Scalar reward models as a judge (issue 15): the ``scalar-rm`` format, its engine path, storage and panels.

The verdict rule is tested on its own; the engine's score cache with a scoring double; everything else with
the tiny random-weight reward model (``rrm-ui dev tiny-rm``) on the real LLMBar and RM-Bench files, each
figure checked against scores computed in the test with transformers directly.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from rrm_ui.backends.base import Backend, BackendError, Scored
from rrm_ui.cli import main
from rrm_ui.config import Settings
from rrm_ui.domain import Choice, Compute, Item, Status, Verdict
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import judge_item
from rrm_ui.engine.scalar import cache_of
from rrm_ui.protocol import FORMATS, get_format
from rrm_ui.protocol.scalar_rm import MAX_LENGTH, verdict_from_scores
from rrm_ui.services import open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.services.judging import judge_and_store, judge_choices, plan_run
from rrm_ui.ui import render, render_item

SCALAR = get_format("scalar-rm")


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1.0, 0.5, Choice.A),
        (-3.0, -2.0, Choice.B),
        (0.25, 0.25, Choice.TIE),
        (0.0, -0.0, Choice.TIE),
        (1e-9, 0.0, Choice.A),
    ],  # fmt: skip
)
def test_the_higher_score_wins_and_equal_scores_tie(a: float, b: float, expected: Choice) -> None:
    assert verdict_from_scores(a, b) is expected


def test_the_format_is_registered_and_in_the_menus() -> None:
    assert FORMATS["scalar-rm"] is SCALAR and SCALAR.scores and SCALAR.can_tie and not SCALAR.thinks
    assert "scalar-rm" in [name for _, name in judge_choices()]
    # the fork's rendering: one response alone, as [user: query, assistant: response]
    assert SCALAR.response_messages("q?", "r.") == [{"role": "user", "content": "q?"},
                                                    {"role": "assistant", "content": "r."}]  # fmt: skip
    assert SCALAR.max_length == 2048 == MAX_LENGTH
    assert SCALAR.source is not None and "armorm.py" in SCALAR.source.path and "random.choice" in SCALAR.source.note


# --- the engine, with a scoring double --------------------------------------------------------------


class Scores(Backend):
    """Scores a response by a table; counts forwards; never generates."""

    name = "scores"

    def __init__(self, table: dict[str, float], fail: set[str] = frozenset()) -> None:
        super().__init__("table")
        self.table, self.fail, self.calls = table, fail, []

    def stream(self, request):  # noqa: ANN001, ANN201 - never called for a scalar judge
        raise AssertionError("a scalar judge must not generate")

    async def score(self, messages: list[dict[str, str]], max_length: int | None = None) -> Scored:
        text = messages[-1]["content"]
        self.calls.append(text)
        await asyncio.sleep(0.01)  # comparisons overlap: the cache must hand out one forward
        if text in self.fail:
            raise RuntimeError(f"cannot score {text!r}")
        return Scored(self.table[text], len(text), 0.5)


def test_a_pair_is_one_judgment_with_both_scores() -> None:
    judge = Judge(Scores({"x": 2.0, "y": 3.0}), SCALAR, compute=Compute(votes=4, swap=True))
    result = asyncio.run(judge_item(judge, Item("p", "q", ("x", "y")), "pair"))
    (pair,) = result.pairs
    (j,) = pair.judgments
    assert (j.a, j.b, j.sample, j.status, j.verdict) == (0, 1, 0, Status.OK, Verdict.B)
    assert (j.score_a, j.score_b, j.reasoning, j.answer) == (2.0, 3.0, "", "")
    assert result.winner == 1 and pair.votes == {0: 0, 1: 1} and pair.samples_spent == 1
    assert j.prompt_tokens == 2 and j.latency_s == pytest.approx(1.0)


def test_equal_scores_are_a_tie_not_an_invalid_vote() -> None:
    judge = Judge(Scores({"x": 1.5, "y": 1.5}), SCALAR)
    result = asyncio.run(judge_item(judge, Item("t", "q", ("x", "y")), "pair"))
    (pair,) = result.pairs
    assert pair.judgments[0].verdict is Verdict.TIE and pair.judgments[0].status is Status.OK
    assert result.winner is None and pair.invalid_votes == 0 and pair.votes == {0: 0, 1: 0}
    card = render.verdict_card(result)
    assert 'data-winner="tie"' in card and "the scores are equal" in card and "Response 1: 1.5" in card
    assert "not applicable" in card and "scores: Response 1 1.5, Response 2 1.5" in card
    # a generative judge's tie verdicts only (no scores): a tie the judge said, not "no verdict"
    said = replace(pair.judgments[0], score_a=None, score_b=None)
    generative = replace(result, pairs=(replace(pair, judgments=(said,)),))
    card = render.verdict_card(generative)
    assert 'data-winner="tie"' in card and "Tie: the judge said tie" in card and "Scores" not in card


def test_a_tournament_scores_each_response_once() -> None:
    table = {f"r{k}": float(v) for k, v in enumerate([3, 9, 1, 7, 5, 2])}
    backend = Scores(table)
    judge = Judge(backend, SCALAR)
    item = Item("list", "q", tuple(table))

    async def go() -> None:  # one event loop, as a judge lives on one
        for strategy, pairs in (("knockout", 5), ("round-robin", 15)):
            result = await judge_item(judge, item, strategy)
            assert len(result.pairs) == pairs
            assert result.winner == 1  # the highest score never loses a match
        assert sorted(backend.calls) == sorted(table)  # 6 forwards for 20 comparisons (the cache is the judge's)
        assert cache_of(judge).forwards == 6
        # the same texts under another item id are scored again (the cache is per item)
        await judge_item(judge, Item("other", "q", ("r0", "r1")), "pair")
        assert len(backend.calls) == 8

    asyncio.run(go())


def test_a_failed_score_is_an_error_judgment_and_is_tried_again_later() -> None:
    backend = Scores({"x": 1.0, "y": 0.0}, fail={"y"})
    judge = Judge(backend, SCALAR)

    async def go() -> None:
        result = await judge_item(judge, Item("e", "q", ("x", "y")), "pair")
        (j,) = result.pairs[0].judgments
        assert j.status is Status.ERROR and j.verdict is None and "cannot score 'y'" in (j.error or "")
        assert j.score_a == 1.0 and j.score_b is None and result.pairs[0].invalid_votes == 1
        backend.fail = set()
        again = await judge_item(judge, Item("e", "q", ("x", "y")), "pair")
        assert again.pairs[0].judgments[0].verdict is Verdict.A
        assert backend.calls.count("y") == 2 and backend.calls.count("x") == 1  # x's score was kept

    asyncio.run(go())


class GenerateOnly(Backend):
    """A backend with no ``score`` of its own (Backend's default refusal)."""

    name = "generate-only"

    def stream(self, request):  # noqa: ANN001, ANN201
        raise AssertionError("a scalar judge never generates")


def test_a_backend_that_cannot_score_says_what_to_do() -> None:
    judge = Judge(GenerateOnly("m"), SCALAR)
    result = asyncio.run(judge_item(judge, Item("o", "q", ("x", "y")), "pair"))
    (j,) = result.pairs[0].judgments
    assert j.status is Status.ERROR
    assert "cannot score responses with a reward model" in (j.error or "") and "--judge scalar-rm" in j.error
    with pytest.raises(BackendError, match="transformers or vllm"):
        asyncio.run(GenerateOnly("m").score([]))


def test_an_unreachable_scoring_server_is_an_error_judgment_after_the_tries() -> None:
    from rrm_ui.backends.openai_http import OpenAIBackend

    backend = OpenAIBackend(["http://127.0.0.1:9/v1"], model="m", max_retries=1, backoff_s=0.01, cooldown_s=0.01)
    result = asyncio.run(judge_item(Judge(backend, SCALAR), Item("o", "q", ("x", "y")), "pair"))
    (j,) = result.pairs[0].judgments
    assert j.status is Status.ERROR and "scoring gave up after 2 attempts" in (j.error or "")
    assert "http://127.0.0.1:9" in (j.error or "") and "ConnectError" in (j.error or "")


# --- the tiny reward model, through transformers ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-rm")
    assert main(["dev", "tiny-rm", str(out)]) == 0
    return out


class Reference:
    """The tiny reward model loaded with transformers directly: the test's own scores."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def score(self, query: str, response: str) -> float:
        import torch

        chat = [{"role": "user", "content": query}, {"role": "assistant", "content": response}]
        text = self.tok.apply_chat_template(chat, tokenize=False)  # RewardBench's prepare_dialogue_from_tokenizer
        assert text.count(self.tok.bos_token) == 1
        ids = self.tok(text, add_special_tokens=False, truncation=True, max_length=2048, return_tensors="pt")
        with torch.no_grad():
            return float(self.model(**ids).logits[0][0])


@pytest.fixture(scope="module")
def reference(tiny_rm: Path) -> Reference:
    return Reference(tiny_rm)


def test_tiny_rm_is_a_sequence_classifier(tiny_rm: Path) -> None:
    config = json.loads((tiny_rm / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["hidden_size"] // config["num_attention_heads"] == 64  # vLLM's CPU attention rejects 16


def test_llmbar_judged_by_the_cli_stores_scores_that_match_transformers(
    tiny_rm: Path, reference: Reference, shared_data: Path, tmp_path: Path
) -> None:
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:8]
    source = tmp_path / "llmbar-8.json"
    source.write_text(json.dumps(rows))
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    assert main(["import", str(source), "--db", db, "--name", "llmbar", "--preset", "llmbar"]) == 0
    assert main(["judge", "--dataset", "llmbar", "--db", db, "--judge", "scalar-rm", "--backend", "transformers",
                 "--model", str(tiny_rm), "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    con = sqlite3.connect(tmp_path / "rrm.db")
    stored = con.execute(
        "SELECT i.query, i.responses, j.a, j.b, j.verdict, j.status, j.score_a, j.score_b, j.reasoning, r.name, "
        "r.template FROM judgments j JOIN items i ON i.id = j.item_id JOIN runs r ON r.id = j.run_id ORDER BY i.id"
    ).fetchall()
    assert len(stored) == len(rows) == 8
    for (query, responses, a, b, verdict, status, score_a, score_b, reasoning, run, template), row in zip(
        stored, rows, strict=True
    ):
        responses = json.loads(responses)
        assert (query, responses) == (row["input"], [row["output_1"], row["output_2"]])
        assert (a, b, status, reasoning, template) == (0, 1, "ok", "", "scalar-rm")
        assert ":scalar-rm:" in run
        mine = reference.score(query, responses[0]), reference.score(query, responses[1])
        assert (score_a, score_b) == pytest.approx(mine, abs=1e-4)
        expected = "A" if mine[0] > mine[1] else "B" if mine[1] > mine[0] else "T"
        assert verdict == expected
    winners = [w for (w,) in con.execute("SELECT winner FROM item_results ORDER BY item_id")]
    assert winners == [{"A": 0, "B": 1, "T": None}[row[4]] for row in stored]


@pytest.fixture(scope="module")
def rm_backend(tiny_rm: Path, loop):  # noqa: ANN001, ANN201
    from rrm_ui.backends.hf_transformers import TransformersBackend

    backend = TransformersBackend(str(tiny_rm), device="cpu")
    loop.run(backend.start())
    yield backend
    loop.run(backend.close())


def test_identical_responses_tie_and_the_model_refuses_to_generate(rm_backend, loop) -> None:  # noqa: ANN001
    from rrm_ui.domain import GenRequest, Sampling

    judge = Judge(rm_backend, SCALAR)
    result = loop.run(judge_item(judge, Item("same", "Say hi.", ("Hi!", "Hi!")), "pair"))
    (j,) = result.pairs[0].judgments
    assert j.verdict is Verdict.TIE and j.score_a == j.score_b and result.winner is None

    async def generate() -> list:
        return [ev async for ev in rm_backend.stream(GenRequest("g", ({"role": "user", "content": "hi"},),
                                                                Sampling(max_tokens=4), 1))]  # fmt: skip

    (record,) = loop.run(generate())
    assert record.error is not None and "--judge scalar-rm" in record.error
    # and a generative judge on it is an error judgment, not a crash
    gen = Judge(rm_backend, get_format("rrm"))
    bad = loop.run(judge_item(gen, Item("g", "q", ("x", "y")), "pair"))
    assert all(x.status is Status.ERROR for x in bad.pairs[0].judgments)


def test_a_stored_tie_is_a_tie_on_the_dashboards(rm_backend, loop, tmp_path: Path) -> None:  # noqa: ANN001
    from rrm_ui.analysis import frames

    source = tmp_path / "pairs.jsonl"
    rows = [{"id": "same", "query": "Say hi.", "response_a": "Hi!", "response_b": "Hi!"},
            {"id": "differ", "query": "Say hi.", "response_a": "Hi!", "response_b": "Go away."}]  # fmt: skip
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'rrm.db'}"))
    info = import_file(repo, source, name="ties")
    judge = Judge(rm_backend, SCALAR)
    plan = plan_run(repo, info.id, "rm", judge, "pair")

    async def go() -> list:
        return [r async for r in judge_and_store(repo, plan, judge, "pair")]

    results = {r.id: r for r in loop.run(go())}
    assert results["same"].winner is None and results["differ"].winner is not None
    built = frames.build(repo.analytics_frames()).results.set_index("ext_id")
    # equal scores: the judge said tie (decision "tie", three-way "tie"), not "no verdict"
    assert built.loc["same", "decision"] == "tie" and built.loc["same", "model_choice3"] == "tie"
    assert built.loc["differ", "decision"] == "decided" and built.loc["differ", "model_choice3"] in ("A", "B")


def test_a_causal_model_cannot_score(tiny_model: Path, loop) -> None:  # noqa: ANN001
    from rrm_ui.backends.hf_transformers import TransformersBackend

    backend = TransformersBackend(str(tiny_model), device="cpu")
    try:
        with pytest.raises(BackendError, match="not a sequence-classification reward model"):
            loop.run(backend.score(SCALAR.response_messages("q", "r")))
    finally:
        loop.run(backend.close())


def test_a_conversation_longer_than_the_limit_is_cut_and_says_so(rm_backend, reference, loop) -> None:  # noqa: ANN001
    long = "word " * 3000
    scored = loop.run(rm_backend.score(SCALAR.response_messages("q", long), SCALAR.max_length))
    assert scored.truncated and scored.prompt_tokens == MAX_LENGTH
    assert scored.score == pytest.approx(reference.score("q", long), abs=1e-4)  # the fork's truncation too
    result = loop.run(judge_item(Judge(rm_backend, SCALAR), Item("long", "q", (long, "short")), "pair"))
    assert result.pairs[0].judgments[0].finish_reason == "score_cut"


def test_rmbench_lists_knockout_with_the_reward_model(
    db_url: str,
    shared_data: Path,
    rm_backend,
    reference: Reference,
    loop,  # noqa: ANN001
) -> None:
    source = shared_data / "rm-bench/chat_filtered.json"
    repo = open_repository(Settings(database_url=db_url))
    info = import_file(repo, source, name="rmbench-chat")
    judge = Judge(rm_backend, SCALAR)
    plan = plan_run(repo, info.id, "rm", judge, "knockout")
    plan = type(plan)(plan.run, plan.created, plan.todo[:2], plan.already_done)
    before = cache_of(judge).forwards

    async def go() -> list:
        return [r async for r in judge_and_store(repo, plan, judge, "knockout")]

    results = loop.run(go())
    assert len(results) == 2 and cache_of(judge).forwards - before == 12  # 6 candidates each, scored once
    frame = repo.frame("judgments")
    assert len(frame) == 10 and frame["score_a"].notna().all() and frame["score_b"].notna().all()
    for stored, result in zip(plan.todo, results, strict=True):
        mine = [reference.score(stored.item.query, r) for r in stored.item.responses]
        assert len(result.pairs) == 5 and result.winner == max(range(6), key=mine.__getitem__)
        for pair in result.pairs:
            (j,) = pair.judgments
            assert (j.score_a, j.score_b) == pytest.approx((mine[j.a], mine[j.b]), abs=1e-4)
        table = render.ranking_table(result)
        assert "Score (reward model)" in table
    # the stored judgments read back with their scores: the item view's traces, the dashboards' frame
    js = repo.item_judgments(plan.todo[0].db_id)
    assert len(js) == 5 and js["score_a"].notna().all()
    assert "scores: Response" in render_item.traces_table(js)
    frames = repo.analytics_frames()
    assert len(frames.judgments) == 10 and frames.judgments[["score_a", "score_b"]].notna().all().all()


# --- vLLM's pooling runner ----------------------------------------------------------------------------


def scores_match_the_reference(judge: Judge, rows: list[dict], reference: Reference, loop) -> None:  # noqa: ANN001
    """Each LLMBar row judged as a pair: one ok judgment whose two scores are the reference's (1e-3) and
    whose verdict is the higher one."""
    for k, row in enumerate(rows):
        item = Item(f"n{k}", row["input"], (row["output_1"], row["output_2"]))
        result = loop.run(judge_item(judge, item, "pair"))
        (j,) = result.pairs[0].judgments
        mine = reference.score(item.query, item.responses[0]), reference.score(item.query, item.responses[1])
        assert j.status is Status.OK, j.error
        assert (j.score_a, j.score_b) == pytest.approx(mine, abs=1e-3)
        assert j.verdict is (Verdict.A if mine[0] > mine[1] else Verdict.B)


@pytest.mark.slow
def test_vllm_pooling_scores_match_transformers(tiny_rm: Path, reference: Reference, shared_data: Path, loop) -> None:  # noqa: ANN001
    from rrm_ui.backends.vllm_engine import VLLMBackend

    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:4]
    backend = VLLMBackend(str(tiny_rm), dtype="float32", enforce_eager=True, max_model_len=4096)
    try:
        loop.run(backend.start())
        assert backend.reward_model
        scores_match_the_reference(Judge(backend, SCALAR), rows, reference, loop)
    finally:
        loop.run(backend.close())


@pytest.mark.slow
def test_a_vllm_pooling_server_scores_as_transformers_through_the_openai_backend(
    tiny_rm: Path, reference: Reference, shared_data: Path, vllm_server, tmp_path: Path, loop  # noqa: ANN001
) -> None:
    """``vllm serve RM --runner pooling`` (a real server on CPU): ``--judge scalar-rm --backend openai``
    scores every response as the transformers reference does; a conversation longer than ``max_length`` is
    cut and says so; a generative server (the tiny causal model's) is refused with what to run instead."""
    from rrm_ui.backends.openai_http import OpenAIBackend
    from tests.conftest import VLLMServer

    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:4]
    server = VLLMServer(tiny_rm, tmp_path, reasoning_parser=False,
                        extra_args=("--runner", "pooling", "--max-model-len", "4096")).wait_ready()  # fmt: skip
    backend = OpenAIBackend([server.url])
    try:
        scores_match_the_reference(Judge(backend, SCALAR), rows, reference, loop)
        chat = [{"role": "user", "content": rows[0]["input"]}, {"role": "assistant", "content": rows[0]["output_1"]}]
        cut = loop.run(backend.score(chat, 16))
        text = reference.tok.apply_chat_template(chat, tokenize=False)
        ids = reference.tok(text, add_special_tokens=False)["input_ids"][:16]
        import torch

        with torch.no_grad():
            expected = float(reference.model(input_ids=torch.tensor([ids])).logits[0][0])
        assert cut.truncated and cut.prompt_tokens == 16 and cut.score == pytest.approx(expected, abs=1e-3)
    finally:
        loop.run(backend.close())
        server.stop()
    generative = OpenAIBackend([vllm_server.url])
    try:
        with pytest.raises(BackendError, match=r"/classify answered HTTP .*vllm serve MODEL --runner pooling"):
            loop.run(generative.score(chat))
    finally:
        loop.run(generative.close())


def test_an_offline_batch_of_a_scalar_judge_is_refused_with_what_to_do() -> None:
    from rrm_ui.domain import JudgeSpec
    from rrm_ui.services.offline import OfflineError, check_offline

    spec = JudgeSpec(judge="scalar-rm", judge_version=SCALAR.version, backend="vllm", model="rm", strategy="pair")
    with pytest.raises(OfflineError, match="reward model's head.*judge it online with --backend transformers or vllm"):
        check_offline(spec, [])


def test_a_job_and_a_live_judgment_use_the_reward_model(tiny_rm: Path, reference: Reference, tmp_path: Path) -> None:
    """The Batch and Judge tabs' paths: a Runtime with the reward model loaded, a job and a live judgment."""
    from rrm_ui.domain import ImportedDataset, ImportedItem, JobStatus, Sampling
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime

    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(backend="transformers", model=str(tiny_rm), device="cpu", database_url=db, concurrency=2)
    rt = Runtime(settings, open_repository(settings))
    manager = None
    try:
        rt.load_model().result(120)
        assert rt.wait_for_model(0).status == "ready", rt.model
        repo = open_repository(Settings(database_url=db))
        items = tuple(ImportedItem(f"x{k}", f"question {k}?", (f"one {k}", f"two {k}", f"three {k}"), k + 1)
                      for k in range(4))  # fmt: skip
        dataset_id = repo.create_dataset(ImportedDataset("lists", "/data/lists.jsonl", "listwise", items)).id
        manager = JobManager(repo, rt)
        job = manager.start(dataset_id, compute=Compute(), sampling=Sampling(), strategy="round-robin", owner="a",
                            judge="scalar-rm")  # fmt: skip
        job = manager.wait(job.id, 120)
        assert job.status is JobStatus.DONE, job
        run = next(r for r in repo.runs(dataset_id) if r.id == job.run_id)
        assert run.template == "scalar-rm" and ":scalar-rm:" in run.name
        frame = repo.frame("judgments")
        assert len(frame) == 4 * 3  # three pairs per item, one judgment each
        by_item = {s.db_id: s.item for s in repo.items(dataset_id)}
        for row in frame.to_dict("records"):
            item = by_item[row["item_id"]]
            assert row["score_a"] == pytest.approx(reference.score(item.query, item.responses[row["a"]]), abs=1e-4)
            assert row["score_b"] == pytest.approx(reference.score(item.query, item.responses[row["b"]]), abs=1e-4)
        # the Judge tab's path: a typed-in pair judged live, its panel showing the scores (nothing streams)
        from rrm_ui.services.live import LiveJudgment, LiveState
        from rrm_ui.ui.tabs.judge import _stream_view

        live = LiveJudgment(rt, Item("live-rm", "Which is right?", ("Four.", "Five.")), compute=Compute(),
                            sampling=Sampling(), judge="scalar-rm")  # fmt: skip
        snap = live.wait(60)
        assert snap.state is LiveState.DONE and snap.result is not None, snap.error
        (stream,) = snap.streams
        mine = reference.score("Which is right?", "Four."), reference.score("Which is right?", "Five.")
        assert (stream.judgment.score_a, stream.judgment.score_b) == pytest.approx(mine, abs=1e-4)
        panel = render.stream_panels([_stream_view(stream, snap.state)])
        assert f"scores: Response 1 {mine[0]:.4g}, Response 2 {mine[1]:.4g}" in panel and "Thinking" not in panel
    finally:
        if manager is not None:
            manager.shutdown()
        rt.close()


def test_settings_that_do_not_change_a_score_do_not_split_or_rename_its_runs() -> None:
    """A scalar reward model takes no sampling and no compute settings: its spec holds the defaults of both,
    so judging with another temperature or vote count resumes the same run; a generative judge's does not."""
    from rrm_ui.domain import Sampling
    from rrm_ui.services.judging import default_run_name, judge_spec, make_spec

    class Served:  # what make_spec and a Judge read of a backend: its name, its model, requests in flight
        name, model, concurrency = "transformers", "/models/tiny-rm", 1

    plain = Settings(judge_format="scalar-rm")
    other = Settings(judge_format="scalar-rm", temperature=1.3, max_tokens=99, seed=7)
    a = make_spec(Served(), plain, compute=Compute(), strategy="knockout")
    b = make_spec(Served(), other, compute=Compute(votes=8, swap=True), strategy="knockout")
    assert a == b and (a.sampling, a.compute) == (Sampling(), Compute())
    assert default_run_name("d", a) == default_run_name("d", b)
    # a Judge built with those settings (the Judge tab) is read as the same spec
    judge = Judge(Served(), SCALAR, sampling=Sampling(temperature=1.3), compute=Compute(votes=8))
    assert judge_spec(judge, "knockout") == a
    # the strategy still matters, and a generative judge's settings still name its runs
    assert make_spec(Served(), plain, compute=Compute(), strategy="round-robin") != a
    rrm = [make_spec(Served(), replace(s, judge_format="rrm"), compute=Compute(), strategy="knockout")
           for s in (plain, other)]  # fmt: skip
    assert default_run_name("d", rrm[0]) != default_run_name("d", rrm[1])


def test_a_scalar_run_is_labelled_by_its_scores_not_by_votes() -> None:
    """The dashboards' compute column: a scalar run says it scores, even one stored with votes by an older
    version; a generative run with the same stored compute says its votes."""
    from rrm_ui.analysis.frames import compute_mode

    stored = Compute(votes=4, swap=True).to_dict()
    assert compute_mode("judge", stored, "scalar-rm") == "scores: one per response"
    assert compute_mode("judge", stored, "rrm") == "fixed: 4 votes x 2 orders"
    assert compute_mode("external", stored, "scalar-rm") == "external"
