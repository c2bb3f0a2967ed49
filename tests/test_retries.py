"""A sample whose server went away is tried again: the failed try is kept, the last try votes.

The engine logic runs against the scripted backend of test_engine (real Judge, prompt and
parser), the backend's part against the scripted HTTP server of test_openai_backend, storage
and the dashboards' frames against a real SQLite database. The fault with a real vLLM server
killed and restarted under the running app is in test_faults.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rrm_ui.analysis import frames
from rrm_ui.backends.openai_http import OpenAIBackend
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, Item, ItemResult, Sampling, Status, last_tries
from rrm_ui.engine.judge import Judge, Observer, StreamUpdate
from rrm_ui.engine.runner import judge_items
from rrm_ui.protocol.rrm import RRM_FORMAT
from rrm_ui.services import open_repository
from tests.scripted_openai import Script
from tests.scripted_openai import serve as serve  # noqa: PLC0414 - the fixture, used by name
from tests.test_engine import GOOD, ITEM, ErrorRecordBackend, ScriptedBackend, prefer_text, seed_of

GOOD_WINS = prefer_text(GOOD)


class FlakyOnce(ErrorRecordBackend):
    """Each (first, second, k) in ``broken`` fails transiently on its first request only."""

    def __init__(self, broken: set[tuple[str, int]], *, transient: bool = True, times: int = 1) -> None:
        self.left = {key: times for key in broken}
        super().__init__(GOOD_WINS, self._fails, transient=transient)

    def _fails(self, first: str, second: str, k: int) -> bool:
        key = (first, k)
        if self.left.get(key, 0) > 0:
            self.left[key] -= 1
            return True
        return False


def judge(backend: ScriptedBackend, *, retries: int, observer: Observer | None = None, **compute: object) -> Judge:
    return Judge(backend, RRM_FORMAT, sampling=Sampling(seed=100), compute=Compute(**compute),  # type: ignore[arg-type]
                 observer=observer, retries=retries, retry_wait_s=0.001)  # fmt: skip


def test_a_transient_failure_is_kept_and_the_sample_tried_again_with_its_own_seed() -> None:
    backend = FlakyOnce({(GOOD, 1)})  # order (1, 0): sample 1 fails once, after streaming its text
    seen: list[StreamUpdate] = []
    outcome = asyncio.run(judge(backend, retries=2, observer=Observer(seen.append), votes=2, swap=True)
                          .judge_pair(ITEM, 0, 1))  # fmt: skip
    assert len(outcome.judgments) == 5  # 2 votes x 2 orders + 1 failed try
    failed = [j for j in outcome.judgments if j.status is Status.ERROR]
    assert [(j.a, j.b, j.sample, j.attempt) for j in failed] == [(1, 0, 1, 0)]
    assert failed[0].error == "upstream said 500" and failed[0].reasoning  # the reason and what streamed
    retry = [j for j in outcome.judgments if j.attempt == 1]
    assert [(j.a, j.b, j.sample, j.status) for j in retry] == [(1, 0, 1, Status.OK)]
    # the last tries vote: 4 valid votes for GOOD (response 1), nothing counted as invalid
    assert outcome.votes == {0: 0, 1: 4} and outcome.invalid_votes == 0 and outcome.winner == 1
    assert outcome.samples_spent == 4 and outcome.position_consistent is True
    # the retry was one request for one sample with that sample's seed (order (1, 0)'s seed + sample 1)
    assert backend.calls[-1].n == 1 and backend.calls[-1].seed == seed_of(100, ITEM.id, 1, 0, 1)
    assert backend.calls[-1].first == GOOD
    # its text streamed under the same sample number with attempt 1, after the failed try's
    keyed = [(u.a, u.b, u.sample, u.attempt) for u in seen if (u.a, u.b, u.sample) == (1, 0, 1)]
    assert keyed[0][3] == 0 and keyed[-1][3] == 1 and sorted(keyed, key=lambda k: k[3]) == keyed


def test_a_failure_that_is_not_transient_is_not_tried_again() -> None:
    backend = FlakyOnce({(GOOD, 0)}, transient=False)
    outcome = asyncio.run(judge(backend, retries=2, votes=1).judge_pair(ITEM, 1, 0))
    assert [(j.status, j.attempt) for j in outcome.judgments] == [(Status.ERROR, 0)]
    assert outcome.invalid_votes == 1 and outcome.winner is None
    assert len(backend.calls) == 1


def test_retries_give_up_after_the_limit_and_the_sample_counts_once() -> None:
    backend = FlakyOnce({(GOOD, 0)}, times=10)
    outcome = asyncio.run(judge(backend, retries=2, votes=1).judge_pair(ITEM, 1, 0))
    assert [(j.status, j.attempt) for j in outcome.judgments] == [(Status.ERROR, 0), (Status.ERROR, 1),
                                                                  (Status.ERROR, 2)]  # fmt: skip
    assert outcome.invalid_votes == 1 and outcome.samples_spent == 1
    assert len(backend.calls) == 3


def test_no_retries_by_default_in_the_engine() -> None:
    backend = FlakyOnce({(GOOD, 0)})
    outcome = asyncio.run(Judge(backend, RRM_FORMAT).judge_pair(ITEM, 1, 0))
    assert [(j.status, j.attempt) for j in outcome.judgments] == [(Status.ERROR, 0)]


def test_adaptive_budget_counts_a_retried_sample_once() -> None:
    backend = FlakyOnce({(GOOD, 0)})  # the first round's order (1, 0) fails once
    outcome = asyncio.run(judge(backend, retries=1, votes=1, swap=True, adaptive=True, budget=4, margin=2)
                          .judge_pair(ITEM, 0, 1))  # fmt: skip
    # unanimous first round after the retry: 2 samples, plus the failed try kept
    assert outcome.samples_spent == 2 and len(outcome.judgments) == 3
    assert outcome.adaptive_reason == "first round unanimous (2 samples)"


def test_openai_backend_stream_cut_mid_judgment_is_tried_again(serve) -> None:  # noqa: ANN001
    script = Script(drop_after=3, drop_requests=2)  # the first two requests lose their connection
    url = serve(script)
    items = [Item(f"q{k}", f"question {k}", (f"first {k}", f"second {k}")) for k in range(2)]

    async def run() -> list[ItemResult]:
        backend = OpenAIBackend([url], backoff_s=0.01)
        j = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=64), retries=1, retry_wait_s=0.01)
        try:
            return [r async for r in judge_items(j, items)]
        finally:
            await backend.close()

    results = asyncio.run(run())
    tries = [j for r in results for p in r.pairs for j in p.judgments]
    assert sorted((j.attempt, j.status) for j in tries) == [(0, Status.ERROR)] * 2 + [(1, Status.OK)] * 2
    assert all(url in j.error and j.reasoning.startswith("step 0.") for j in tries if j.attempt == 0)
    assert all(r.winner == 0 for r in results)  # the scripted server says Assistant 1
    assert script.requests == 4


def test_stored_tries_read_back_and_the_dashboards_count_the_last_try(tmp_path: Path) -> None:
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    dataset_id, item_db_id = repo.add_item("retries", ITEM)
    settings = {"backend": "scripted", "model": "scripted-model", "template": "rrm", "template_version": "1"}
    run, _ = repo.get_or_create_run(dataset_id, "flaky", strategy="pair", sampling={}, compute={}, **settings)
    outcome = asyncio.run(judge(FlakyOnce({(GOOD, 1)}), retries=1, votes=2).judge_pair(ITEM, 1, 0))
    result = ItemResult(ITEM.id, "pair", outcome.winner, (1, 0), (outcome,), "rrm", "1", "scripted-model", "scripted")
    repo.save_result(run.id, item_db_id, result)
    stored = repo.item_judgments(item_db_id)
    assert sorted(zip(stored["sample"], stored["attempt"], stored["status"], strict=True)) == [
        (0, 0, "ok"), (1, 0, "error"), (1, 1, "ok")]  # fmt: skip
    j = frames.build(repo.analytics_frames()).judgments
    assert sorted(zip(j["sample"], j["attempt"], j["retried"], strict=True)) == [(0, 0, False), (1, 0, True),
                                                                                 (1, 1, False)]  # fmt: skip
    assert len(last_tries(list(outcome.judgments))) == 2


class _Runtime:
    """What LiveJudgment needs of the app's runtime: a judge on a flaky backend, a loop, a database."""

    def __init__(self, repo: object, loop: object, backend: ScriptedBackend) -> None:
        self.repo, self.loop, self.backend = repo, loop, backend

    def judge(self, compute: Compute, sampling: Sampling, observer: Observer) -> Judge:
        return Judge(self.backend, RRM_FORMAT, sampling=sampling, compute=compute, observer=observer, retries=1,
                     retry_wait_s=0.001)  # fmt: skip

    def submit(self, coro):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop.loop)


def test_the_live_panel_starts_over_on_a_retry_and_the_failed_try_is_stored(tmp_path: Path, loop) -> None:  # noqa: ANN001
    from rrm_ui.services.live import LiveJudgment, LiveState

    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    live = LiveJudgment(_Runtime(repo, loop, FlakyOnce({(GOOD, 0)})), ITEM, compute=Compute(votes=1, swap=True),
                        sampling=Sampling(seed=7))  # fmt: skip
    snap = live.wait(60)
    assert snap.state is LiveState.DONE, snap.error
    panels = {(s.a, s.b, s.sample): s for s in snap.streams}
    assert len(panels) == 2  # one panel per sample: the retry replaced the failed try's text in its panel
    retried = panels[(1, 0, 0)]
    assert retried.attempt == 1 and retried.judgment.status is Status.OK and retried.judgment.attempt == 1
    assert retried.reasoning == retried.judgment.reasoning  # the new try's text only, not both tries'
    stored = repo.item_judgments(snap.item_db_id)
    assert sorted(zip(stored["a"], stored["attempt"], stored["status"], strict=True)) == [
        (0, 0, "ok"), (1, 0, "error"), (1, 1, "ok")]  # fmt: skip
    assert snap.result.winner == 1 and snap.result.pairs[0].invalid_votes == 0
