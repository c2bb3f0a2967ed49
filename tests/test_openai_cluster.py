"""The openai backend in front of a cluster (issue 18, "Online against a cluster").

A pair's samples share one endpoint (and one data-parallel engine) and carry the prompt's key for
session-aware routers; the endpoint picker counts the servers' own load from ``/metrics``; interactive
judging is sent with a higher priority than batch jobs when the servers schedule by priority.
Scripted OpenAI servers (real HTTP on loopback, scripted answers and ``/metrics`` pages: a test double
for the routing logic) drive the logic; the slow tests use a real vLLM server with the tiny model.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from rrm_ui.backends.openai_http import RANK_HEADER, OpenAIBackend, server_load
from rrm_ui.domain import Compute, Item, Sampling, Status
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import judge_items
from rrm_ui.protocol import RRM_FORMAT
from rrm_ui.services.judging import BATCH_PRIORITY as BATCH
from rrm_ui.services.judging import INTERACTIVE_PRIORITY as INTERACTIVE
from tests.conftest import VLLMServer
from tests.scripted_openai import Script
from tests.scripted_openai import serve as serve  # noqa: PLC0414 - the fixture, used by name

KEY_HEADER = "X-Session-ID"


def cluster(**script: object) -> Script:
    """A scripted server of these tests: two reasoning deltas, then the verdict."""
    return Script(chunks=2, **script)


def items(n: int, tag: str = "q") -> list[Item]:
    return [Item(f"{tag}{k}", f"question {tag} {k}", (f"first {k}", f"second {k}")) for k in range(n)]


def judge_all(backend: OpenAIBackend, batches: list[list[Item]], compute: Compute | None = None, *,
              priority: int = 0, between=None) -> list:  # noqa: ANN001  # fmt: skip
    """Judge each batch in turn with one backend (``between()`` runs after each batch but the last)."""

    async def run() -> list:
        judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=64, seed=3), compute=compute,
                      priority=priority)  # fmt: skip
        out = []
        try:
            for k, batch in enumerate(batches):
                out += [r async for r in judge_items(judge, batch)]
                if between is not None and k < len(batches) - 1:
                    await between()
            return out
        finally:
            await backend.close()

    return asyncio.run(run())


def all_ok(results: list) -> bool:
    """True when every judgment is ok; else fails with the first ones that are not (status, error), so a
    failure says what went wrong (CI once saw one here that a bare False did not explain)."""
    bad = [(r.id, j.status.value, j.finish_reason, j.error) for r in results for p in r.pairs for j in p.judgments
           if j.status is not Status.OK]  # fmt: skip
    assert not bad, bad[:5]
    return True


def prompt_key(body: dict) -> str:
    """The documented key: BLAKE2b (8 bytes) of the messages as sorted-key JSON, written out here."""
    text = json.dumps(body["messages"], sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def by_prompt(scripts: dict[str, Script]) -> dict[str, list[tuple[str, dict]]]:
    """Every POST, grouped by its prompt (the messages), as (endpoint, post)."""
    groups: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for url, script in scripts.items():
        for post in script.posts:
            groups[json.dumps(post["body"]["messages"], sort_keys=True)].append((url, post))
    return groups


def vllm_metrics(load: dict[str, tuple[float, float]], model: str = "scripted-judge") -> str:
    """A /metrics page as vLLM 0.32 writes it: per engine (running, waiting), with other metrics around."""
    lines = ["# HELP vllm:num_requests_running Number of requests in model execution batches.",
             "# TYPE vllm:num_requests_running gauge"]  # fmt: skip
    lines += [f'vllm:num_requests_running{{engine="{e}",model_name="{model}"}} {r}' for e, (r, _) in load.items()]
    lines += ["# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
              "# TYPE vllm:num_requests_waiting gauge"]  # fmt: skip
    lines += [f'vllm:num_requests_waiting{{engine="{e}",model_name="{model}"}} {w}' for e, (_, w) in load.items()]
    lines += [f'vllm:num_requests_waiting_by_reason{{engine="{e}",model_name="{model}",reason="capacity"}} 99.0'
              for e in load]  # fmt: skip
    lines += [f'vllm:kv_cache_usage_perc{{engine="{e}",model_name="{model}"}} 0.5' for e in load]
    return "\n".join(lines) + "\n"


# --- the /metrics reading --------------------------------------------------------------------------


def test_server_load_sums_running_and_waiting_per_engine() -> None:
    load = {"0": (3.0, 5.0), "1": (0.0, 2.0), "2": (7.0, 0.0)}
    assert server_load(vllm_metrics(load)) == {e: r + w for e, (r, w) in load.items()}
    # without an engine label (a router's page, an older server): one total under ""
    page = "vllm:num_requests_running 4.0\nvllm:num_requests_waiting 1.0\nvllm:num_requests_running_x 8\n"
    assert server_load(page) == {"": 5.0}
    # the production-stack router labels its figures by server
    page = 'vllm:num_requests_running{server="http://a:8000"} 2.0\nvllm:num_requests_running{server="http://b"} 3\n'
    assert server_load(page) == {"": 5.0}
    assert server_load('{"data": []}') is None and server_load("") is None


# --- prefix sharing --------------------------------------------------------------------------------


def test_a_pairs_samples_share_one_endpoint_and_carry_its_prompt_key(serve) -> None:  # noqa: ANN001
    scripts = {}
    for _ in range(3):
        script = cluster(chunk_delay_s=0.005)
        scripts[serve(script)] = script
    backend = OpenAIBackend(list(scripts), model="scripted-judge", per_endpoint_concurrency=8)
    batch = items(12)
    results = judge_all(backend, [batch], Compute(votes=4, swap=True))
    assert all_ok(results)
    groups = by_prompt(scripts)
    assert len(groups) == 2 * len(batch)  # one prompt per item and order
    keys = set()
    for posts in groups.values():
        assert len(posts) == 4  # the votes of one order
        assert len({url for url, _ in posts}) == 1, "a prompt's samples went to several endpoints"
        [key] = {post["headers"][KEY_HEADER.lower()] for _, post in posts}
        assert key == prompt_key(posts[0][1]["body"])
        assert len({post["body"]["seed"] for _, post in posts}) == 4  # still one seed per sample
        keys.add(key)
    assert len(keys) == len(groups)
    # different prompts spread over the endpoints, by load (prompts placed in one burst count before they start)
    per_endpoint = {url: len(s.posts) // 4 for url, s in scripts.items()}
    assert all(n >= 6 for n in per_endpoint.values()), per_endpoint


def test_the_same_prompt_goes_back_to_its_endpoint(serve) -> None:  # noqa: ANN001
    scripts = {}
    for _ in range(2):
        script = cluster(chunk_delay_s=0.002)
        scripts[serve(script)] = script
    backend = OpenAIBackend(list(scripts), model="scripted-judge", per_endpoint_concurrency=4)
    batch = items(8)
    assert all_ok(judge_all(backend, [batch, batch], Compute(votes=2)))  # judged twice: a later round's prompts
    for posts in by_prompt(scripts).values():
        assert len(posts) == 4 and len({url for url, _ in posts}) == 1


def test_no_affinity_header_when_turned_off(serve) -> None:  # noqa: ANN001
    script = cluster()
    backend = OpenAIBackend([serve(script)], model="scripted-judge", affinity_header="")
    assert all_ok(judge_all(backend, [items(2)]))
    assert all(KEY_HEADER.lower() not in post["headers"] for post in script.posts)


# --- load from the servers -------------------------------------------------------------------------


def test_a_busy_endpoint_gets_fewer_new_requests(serve) -> None:  # noqa: ANN001
    busy, idle = cluster(metrics=vllm_metrics({"0": (30.0, 10.0)})), cluster(metrics=vllm_metrics({"0": (0.0, 0.0)}))
    urls = [serve(busy), serve(idle)]
    backend = OpenAIBackend(urls, model="scripted-judge", per_endpoint_concurrency=32, metrics_s=0.05)

    async def flip() -> None:  # the other app's load moves to the endpoint that was idle
        busy.metrics, idle.metrics = idle.metrics, busy.metrics
        await backend._read_all_metrics()  # the reading a pick after metrics_s would start

    first, second = items(12, "a"), items(12, "b")
    assert all_ok(judge_all(backend, [first, second], between=flip))
    by_item = {post["body"]["messages"][-1]["content"]: url for url, s in zip(urls, (busy, idle), strict=True)
               for post in s.posts}  # fmt: skip
    placed = defaultdict(lambda: defaultdict(int))
    for text, url in by_item.items():
        batch = "a" if "question a " in text else "b"
        placed[batch][url] += 1
    # 40 requests on the busy server against our limit of 32: every new request goes to the other one,
    # where before (only our own counts) they split about evenly
    assert placed["a"] == {urls[1]: 12}, placed["a"]
    assert placed["b"] == {urls[0]: 12}, placed["b"]


def test_metrics_are_read_at_most_every_interval(serve) -> None:  # noqa: ANN001
    script = cluster(metrics=vllm_metrics({"0": (1.0, 0.0)}), chunk_delay_s=0.02)
    interval = 0.2

    async def pause() -> None:  # a quiet spell longer than the interval: the next pick reads again
        await asyncio.sleep(1.5 * interval)

    backend = OpenAIBackend([serve(script)], model="scripted-judge", metrics_s=interval)
    # when the backend decides to read each endpoint's /metrics: the rule under test. (Timing the requests as
    # they go out, as this test first did, flaked on a loaded machine: one request can leave later than the
    # decision that scheduled it, so two of them can be closer than the interval that was kept.)
    times: list[float] = []
    read = backend._read_metrics

    async def timed(ep) -> None:  # noqa: ANN001
        times.append(time.monotonic())
        await read(ep)

    backend._read_metrics = timed  # type: ignore[method-assign]
    assert all_ok(judge_all(backend, [items(6, "a"), items(6, "b"), items(6, "c")], Compute(votes=2), between=pause))
    assert len(times) >= 3 and script.metrics_reads <= len(times), times  # at start, then for batches b and c
    assert all(b - a >= interval for a, b in itertools.pairwise(times)), times  # never more often


def test_a_server_without_metrics_is_balanced_by_own_counts_and_not_asked_again(serve) -> None:  # noqa: ANN001
    scripts = [cluster(chunk_delay_s=0.01), cluster(chunk_delay_s=0.01)]
    urls = [serve(s) for s in scripts]
    backend = OpenAIBackend(urls, model="scripted-judge", per_endpoint_concurrency=2, metrics_s=0.01)
    assert all_ok(judge_all(backend, [items(12)]))
    assert all(len(s.posts) >= 4 for s in scripts), [len(s.posts) for s in scripts]
    assert [s.metrics_reads for s in scripts] == [1, 1]  # at start; a 404 waits a minute before the next
    assert all(ep.server_load is None and "HTTP 404" in ep.metrics_error for ep in backend.endpoints)


def test_data_parallel_engines_are_pinned_per_prompt_least_loaded_first(serve) -> None:  # noqa: ANN001
    script = cluster(metrics=vllm_metrics({"0": (0.0, 0.0), "1": (0.0, 0.0)}), chunk_delay_s=0.005)
    url = serve(script)
    backend = OpenAIBackend([url], model="scripted-judge", metrics_s=0.05)

    async def load_engine_0() -> None:
        script.metrics = vllm_metrics({"0": (40.0, 20.0), "1": (0.0, 0.0)})
        await backend._read_all_metrics()

    first, second = items(8, "a"), items(8, "b")
    assert all_ok(judge_all(backend, [first, second], Compute(votes=3), between=load_engine_0))
    groups = by_prompt({url: script})
    engines = {"a": defaultdict(int), "b": defaultdict(int)}
    for posts in groups.values():
        [rank] = {post["headers"][RANK_HEADER.lower()] for _, post in posts}  # one engine per prompt
        batch = "a" if "question a " in posts[0][1]["body"]["messages"][-1]["content"] else "b"
        engines[batch][rank] += 1
    assert set(engines["a"]) == {"0", "1"} and min(engines["a"].values()) >= 3, engines  # idle engines: both
    assert engines["b"] == {"1": len(second)}, engines  # engine 0 has 60 requests of others


def test_a_refused_engine_header_is_not_sent_again(serve) -> None:  # noqa: ANN001
    script = cluster(metrics=vllm_metrics({"0": (0.0, 0.0), "1": (0.0, 0.0)}), refuse_rank=True)
    backend = OpenAIBackend([serve(script)], model="scripted-judge", backoff_s=0.01)
    assert all_ok(judge_all(backend, [items(4)], Compute(votes=2)))
    refused = [p for p in script.posts if RANK_HEADER.lower() in p["headers"]]
    assert refused  # the first requests (sent at once, before the first refusal came back), then none
    assert len(script.posts) == len(refused) + 8 and backend.endpoints[0].ranks_refused


# --- priority --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduling", [True, False])
def test_priority_is_sent_only_when_the_servers_schedule_by_it(serve, scheduling: bool) -> None:  # noqa: ANN001
    script = cluster()
    backend = OpenAIBackend([serve(script)], model="scripted-judge", priority_scheduling=scheduling)
    assert all_ok(judge_all(backend, [items(3)], Compute(votes=2), priority=-1))
    assert len(script.posts) == 6
    if scheduling:
        assert all(p["body"]["priority"] == -1 for p in script.posts)
    else:
        assert all("priority" not in p["body"] for p in script.posts)


def test_interactive_judging_is_sent_ahead_of_batch_jobs(serve, tmp_path: Path) -> None:  # noqa: ANN001
    from rrm_ui.config import Settings
    from rrm_ui.domain import ImportedDataset, ImportedItem
    from rrm_ui.services import open_repository
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.judging import BATCH_PRIORITY, INTERACTIVE_PRIORITY
    from rrm_ui.services.live import LiveJudgment
    from rrm_ui.services.runtime import Runtime

    assert INTERACTIVE_PRIORITY < BATCH_PRIORITY  # lower runs earlier on vLLM
    script = cluster()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}", backend="openai", endpoints=(serve(script),),
                        model="scripted-judge", priority_scheduling=True, max_tokens=32, seed=1)  # fmt: skip
    repo = open_repository(settings)
    rt = Runtime(settings, repo)
    manager = JobManager(repo, rt)
    try:
        rt.load_model().result(60)
        live = LiveJudgment(rt, Item("typed", "a typed question", ("one", "two")), compute=Compute(votes=2),
                            sampling=rt.sampling())  # fmt: skip
        assert live.wait(60).state.value == "done"
        stored = tuple(ImportedItem(f"x{k}", f"stored question {k}", ("yes", "no"), k + 1) for k in range(3))
        ds = repo.create_dataset(ImportedDataset("d", "/data/d.jsonl", "pairwise", stored)).id
        job = manager.start(ds, compute=Compute(votes=2), sampling=rt.sampling(), strategy="auto", owner=None)
        assert manager.wait(job.id, 60).status.value == "done"
    finally:
        manager.shutdown()
        rt.close()
    priorities = defaultdict(set)
    for post in script.posts:
        text = post["body"]["messages"][-1]["content"]
        priorities["live" if "a typed question" in text else "job"].add(post["body"]["priority"])
    assert priorities == {"live": {INTERACTIVE_PRIORITY}, "job": {BATCH_PRIORITY}}


def test_the_settings_reach_the_backend() -> None:
    from rrm_ui.backends import create_backend
    from rrm_ui.config import Settings

    env = {"RRM_UI_PRIORITY_SCHEDULING": "yes", "RRM_UI_SERVER_METRICS_S": "0.5", "RRM_UI_AFFINITY_HEADER": "",
           "RRM_UI_ENDPOINTS": "http://127.0.0.1:9/v1"}  # fmt: skip
    backend = create_backend(Settings.from_env(env))
    assert (backend.priority_scheduling, backend.metrics_s, backend.affinity_header) == (True, 0.5, None)
    default = create_backend(Settings(endpoints=("http://127.0.0.1:9/v1",)))
    assert (default.priority_scheduling, default.metrics_s, default.affinity_header) == (False, 2.0, KEY_HEADER)
    with pytest.raises(ValueError, match="RRM_UI_PRIORITY_SCHEDULING"):
        Settings.from_env({"RRM_UI_PRIORITY_SCHEDULING": "maybe"})


# --- a real vLLM server --------------------------------------------------------------------------


@pytest.mark.slow
def test_real_vllm_metrics_are_read_while_a_request_runs(vllm_server) -> None:  # noqa: ANN001
    """The default (FCFS) server: its /metrics gives its one engine's load, a request in flight counted;
    a priority sent to it is accepted and ignored (vLLM 0.32 documents an error it does not raise)."""

    async def run() -> tuple[dict | None, tuple[dict | None, list[str]], list]:
        # min_tokens (a vLLM sampling field, sent as is): all 1,200 tokens, the request in the engine for
        # seconds even on a loaded machine, so that readings (each may wait on a busy server) see it
        backend = OpenAIBackend([vllm_server.url], backoff_s=0.05, metrics_s=0.05, priority_scheduling=True,
                                extra_body={"min_tokens": 1200})  # fmt: skip
        await backend.start()
        ep = backend.endpoints[0]
        idle = ep.server_load
        judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=1200, seed=1), priority=-1)
        task = asyncio.ensure_future(judge.judge_order(items(1)[0], 0, 1, 1))
        busy, errors = None, []
        while not task.done():  # read the server as the picker does, while the request runs
            await asyncio.sleep(0.05)
            await backend._read_metrics(ep)
            errors.append(ep.metrics_error)
            if ep.server_load and sum(ep.server_load.values()) >= 1:
                busy = dict(ep.server_load)
                break
        judged = await task
        await backend.close()
        return idle, (busy, [e for e in errors if e]), judged

    idle, (busy, errors), judged = asyncio.run(asyncio.wait_for(run(), 240))
    assert idle == {"0": 0.0}  # one engine, nothing running: as the server's own gauges say now
    assert vllm_server.metric("vllm:num_requests_running") + vllm_server.metric("vllm:num_requests_waiting") == 0
    assert [j.error for j in judged] == [None]  # priority -1 sent to an FCFS server: accepted
    assert judged[0].completion_tokens == 1200  # min_tokens reached the server
    assert busy is not None and busy["0"] >= 1, errors  # the readings that failed, if any


@pytest.mark.slow
def test_real_vllm_with_priority_scheduling_serves_interactive_requests_first(tiny_model: Path, tmp_path: Path) -> None:
    """One request at a time (``--max-num-seqs 1``): four batch requests (priority 0) reach the engine first,
    one running and three waiting, as the server's own gauges show; then one interactive request (-1).
    FCFS would finish it after all four; priority scheduling runs it next, before the three queued ones."""
    from rrm_ui.domain import GenRecord, GenRequest

    server = VLLMServer(tiny_model, tmp_path,
                        extra_args=("--scheduling-policy", "priority", "--max-num-seqs", "1")).wait_ready()  # fmt: skip
    metrics_url = server.url.removesuffix("/v1") + "/metrics"

    async def gauges(client: httpx.AsyncClient) -> tuple[float, float]:
        page = (await client.get(metrics_url, timeout=10)).text

        def total(name: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(name + "{"))

        return total("vllm:num_requests_running"), total("vllm:num_requests_waiting")

    async def run() -> tuple[list[str], tuple[float, float], list[str]]:
        backend = OpenAIBackend([server.url], priority_scheduling=True, per_endpoint_concurrency=8)
        await backend.start()
        finished: list[str] = []

        async def one(name: str, priority: int) -> None:
            messages = ({"role": "user", "content": f"request {name}"},)
            request = GenRequest(name, messages, Sampling(max_tokens=1000, seed=1), 1, priority=priority)
            async for ev in backend.stream(request):
                if isinstance(ev, GenRecord):
                    assert ev.error is None, ev.error
                    finished.append(name)

        async with httpx.AsyncClient() as probe:
            batch = [asyncio.ensure_future(one(f"batch-{k}", BATCH)) for k in range(4)]
            state = await gauges(probe)
            while state != (1.0, 3.0) and not finished:  # wait (event loop free) until all four are queued
                await asyncio.sleep(0.1)
                state = await gauges(probe)
            done_before = list(finished)
            await one("interactive", INTERACTIVE)
        await asyncio.gather(*batch)
        await backend.close()
        return finished, state, done_before

    try:
        order, state, done_before = asyncio.run(asyncio.wait_for(run(), 300))
    finally:
        server.stop()
    # sent while one batch request ran and three waited in the engine: priority runs it right after the running
    # one (second); allow one place more for the time the server takes to take it in. FCFS finishes it fifth.
    assert state == (1.0, 3.0) and done_before == [], (state, done_before, order)
    assert len(order) == 5 and order.index("interactive") <= 2, order


def _per_engine(page: str, name: str) -> dict[str, float]:
    """The samples of one metric on a /metrics page, summed per engine label."""
    out: dict[str, float] = defaultdict(float)
    for line in page.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            engine = next(part.split("=", 1)[1].strip('"') for part in labels.split(",") if part.startswith("engine="))
            out[engine] += float(value)
    return dict(out)


@pytest.mark.slow
def test_real_vllm_data_parallel_server_runs_each_prompt_on_its_pinned_engine(tiny_model: Path, tmp_path: Path) -> None:
    """``--data-parallel-size 2`` on CPU: the backend finds both engines in /metrics, sends each prompt's votes
    with one X-data-parallel-rank, and the server's own per-engine counters show them run there."""
    server = VLLMServer(tiny_model, tmp_path, extra_args=("--data-parallel-size", "2")).wait_ready(600)
    sent: list[tuple[str, str | None]] = []  # (the prompt's key, the engine header) of each chat request

    async def hook(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append((request.headers[KEY_HEADER], request.headers.get(RANK_HEADER)))

    async def run() -> tuple[list, list[str]]:
        backend = OpenAIBackend([server.url], metrics_s=0.5)
        backend._client = httpx.AsyncClient(timeout=backend.timeout, event_hooks={"request": [hook]})
        judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=16, seed=1), compute=Compute(votes=3))
        try:
            results = [r async for r in judge_items(judge, items(6))]
            return results, backend.endpoints[0].engines
        finally:
            await backend.close()

    try:
        results, engines = asyncio.run(asyncio.wait_for(run(), 300))
        page = httpx.get(server.url.removesuffix("/v1") + "/metrics", timeout=10).text
    finally:
        server.stop()
    js = [j for r in results for p in r.pairs for j in p.judgments]
    assert len(js) == 18 and all(j.error is None for j in js), [j.error for j in js]
    assert engines == ["0", "1"]
    by_key: dict[str, set] = defaultdict(set)
    for key, rank in sent:
        by_key[key].add(rank)
    assert len(by_key) == 6 and all(len(ranks) == 1 and None not in ranks for ranks in by_key.values()), by_key
    tally = {e: float(sum(1 for _, rank in sent if rank == e)) for e in engines}
    assert _per_engine(page, "vllm:request_success_total") == tally  # the server ran them where they were sent
    assert min(tally.values()) >= 3 * 2  # prompts spread: at least two of the six on each engine
    cached = _per_engine(page, "vllm:prompt_tokens_cached_total")
    assert all(cached.get(e, 0) > 0 for e in engines), cached  # the later votes of a prompt found it cached
