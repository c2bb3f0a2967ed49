"""One run spec (issue 15): the settings of a run are one JudgeSpec, whoever starts it.

A CLI run, a Judge-tab judgment and a batch job with the same settings produce equal specs (and the
runs they store read back as that spec); a resumed job judges with the spec it started with. The
spec and ItemResult round-trip through their dict forms; the adaptive budget is one rule.
Real parts: the tiny model on the transformers backend, a real Runtime, SQLite.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rrm_ui.backends import create_backend
from rrm_ui.cli import build_parser
from rrm_ui.cli.options import compute_from, settings_from
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, ImportedDataset, ImportedItem, Item, ItemResult, JobStatus, JudgeSpec, Sampling
from rrm_ui.engine.runner import judge_item
from rrm_ui.protocol import RRM_FORMAT
from rrm_ui.services import open_repository
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.judging import ModelMismatch, build_judge, default_run_name, judge_spec, make_spec
from rrm_ui.services.runtime import ModelStatus, Runtime
from rrm_ui.ui import controls
from rrm_ui.ui.context import AppContext

SEED, BUDGET = 7, 24


@pytest.fixture(scope="module")
def runtime(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    db = tmp_path_factory.mktemp("spec") / "spec.db"
    settings = Settings(backend="transformers", model=str(tiny_model), database_url=f"sqlite:///{db}",
                        max_tokens=64, seed=SEED, hf_offline=True, retry_wait_s=0.01)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    rt.load_model()
    assert rt.wait_for_model(120).status == ModelStatus.READY, rt.model.message
    yield rt
    rt.close()


def test_spec_round_trips_and_says_what_is_wrong() -> None:
    spec = JudgeSpec("mtbench-v2", "1", "vllm", "m", Sampling(0.7, 0.9, 64, 3), Compute(votes=2, swap=True), "pair")
    assert JudgeSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["compute"] == {"votes": 2, "swap": True, "adaptive": False, "budget": 8, "margin": 2}
    with pytest.raises(ValueError, match="needs judge_version"):
        JudgeSpec.from_dict({**spec.to_dict(), "judge_version": None})
    with pytest.raises(ValueError, match="unknown judge spec field.*colour"):
        JudgeSpec.from_dict({**spec.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="judge spec:.*typo"):
        JudgeSpec.from_dict({**spec.to_dict(), "compute": {"typo": 1}})


def test_the_adaptive_budget_is_one_rule() -> None:
    parser = build_parser()
    for votes in (1, 3, 4, 6):
        args = parser.parse_args(["judge", "x.jsonl", "--out", "o", "--adaptive", "--votes", str(votes)])
        expected = max(8, 2 * votes)  # two samples per vote, at least 8
        assert compute_from(args).budget == expected
        assert controls.compute_from_form(votes, False, True).budget == expected
        assert Compute(votes=votes, adaptive=True).budget == expected
    args = parser.parse_args(["judge", "x.jsonl", "--out", "o", "--budget", "3", "--votes", "5"])
    assert compute_from(args) == Compute(votes=5, budget=3)


def test_cli_flags_are_the_settings_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRM_UI_RETRY_WAIT_S", "3")
    argv = ["judge", "x.jsonl", "--out", "o", "--judge", "pandalm", "--endpoint", "http://a/v1", "--endpoint",
            "http://b/v1", "--temperature", "0.2", "--enforce-eager"]  # fmt: skip
    s = settings_from(build_parser().parse_args(argv))
    assert (s.judge_format, s.endpoints, s.temperature, s.enforce_eager) == (
        "pandalm", ("http://a/v1", "http://b/v1"), 0.2, True)  # fmt: skip
    assert s.retry_wait_s == 3.0  # not on the command line: the environment's, not a second default
    assert Settings().retry_wait_s == 10.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["judge", "x.jsonl", "--judge", "no-such-judge"])


def test_item_result_round_trips(runtime: Runtime) -> None:
    judge = runtime.judge(Compute(votes=2, swap=True), runtime.sampling(max_tokens=BUDGET))
    pair = Item("p", "Which?", ("Four.", "Five."))
    three = Item("t", "Which?", ("a", "b", "c"))
    results = [runtime.call(judge_item(judge, pair, "pair")), runtime.call(judge_item(judge, three, "round-robin")),
               runtime.call(judge_item(judge, three, "knockout"))]  # fmt: skip
    assert results[1].ratings and results[2].bracket
    for result in results:
        again = ItemResult.from_dict(json.loads(json.dumps(result.to_dict())))
        assert again == result
        assert [j.to_dict() for p in again.pairs for j in p.judgments] == result.to_dict()["comparisons"]


def _wait(ctx: AppContext, job_id: int, done: set[JobStatus], timeout: float = 240) -> JobStatus:
    deadline = time.monotonic() + timeout
    while (status := ctx.jobs.progress(job_id).status) not in done:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_cli_judge_tab_and_batch_job_share_one_spec_and_a_resumed_job_keeps_it(runtime: Runtime) -> None:
    from rrm_ui.ui.tabs import batch
    from rrm_ui.ui.tabs import judge as judge_tab

    repo = runtime.repo
    items = tuple(ImportedItem(f"x{k}", f"q{k}?", (f"one {k}", f"two {k}"), k + 1) for k in range(4))
    ds = repo.create_dataset(ImportedDataset("spec", "/d.jsonl", "pairwise", items))
    ctx = AppContext(runtime, JobManager(repo, runtime), login=False)
    try:
        # the command line: rrm-ui judge with the same settings
        argv = ["judge", "in.jsonl", "--out", "o.jsonl", "--backend", "transformers", "--model",
                runtime.settings.model, "--max-tokens", str(BUDGET), "--seed", str(SEED), "--votes", "2", "--swap",
                "--strategy", "pair"]  # fmt: skip
        args = build_parser().parse_args(argv)
        settings = settings_from(args, database_url=runtime.settings.database_url)
        cli = make_spec(create_backend(settings), settings, compute=compute_from(args), strategy=args.strategy)

        # the Judge tab's form
        form = judge_tab.JudgeForm("Which?", ["Four.", "Five."], BUDGET, 2, True, False, "auto")
        live = judge_tab.start(ctx, None, form)
        snap = live.wait(240)
        assert snap.error is None, snap.error
        tab_run = next(r for r in repo.runs() if r.id == snap.run_id)

        # the Batch tab's form
        said = batch.start_job(ctx, None, ds.name, BUDGET, 2, True, False, "pair", "")
        assert said.startswith("Started job"), said
        job = ctx.jobs.jobs(dataset_id=ds.id)[0]  # newest first; the module's runtime ran other jobs
        job_run = next(r for r in repo.runs(ds.id) if r.id == job.run_id)

        assert cli == live.spec == JudgeSpec.from_run(tab_run) == JudgeSpec.from_run(job_run)
        assert cli == JudgeSpec("rrm", RRM_FORMAT.version, "transformers", runtime.settings.model,
                                Sampling(0.6, 1.0, BUDGET, SEED), Compute(votes=2, swap=True), "pair")  # fmt: skip
        assert job_run.name == default_run_name(ds.name, cli) and ":rrm:" in job_run.name

        # pause, resume: the resumed worker judges with the run's stored spec, into the same run
        ctx.jobs.pause(job.id, is_admin=True)
        _wait(ctx, job.id, {JobStatus.PAUSED, JobStatus.DONE})
        resumed = ctx.jobs._judge_for(job_run)  # the judge resume() launches
        assert judge_spec(resumed, job_run.strategy) == cli
        ctx.jobs.resume(job.id, is_admin=True)
        assert _wait(ctx, job.id, {JobStatus.DONE, JobStatus.FAILED}) is JobStatus.DONE
        assert [r.id for r in repo.runs(ds.id)] == [job_run.id]
        assert len(repo.judged_item_ids(job_run.id)) == len(items)
    finally:
        ctx.jobs.shutdown()


def test_build_judge_refuses_a_spec_of_another_model_or_format_version(runtime: Runtime) -> None:
    spec = runtime.spec(Compute(), Sampling(max_tokens=8))
    with pytest.raises(ModelMismatch, match="someone/else"):
        runtime.judge_for(JudgeSpec.from_dict({**spec.to_dict(), "model": "someone/else"}))
    newer = JudgeSpec.from_dict({**spec.to_dict(), "judge_version": "99"})
    with pytest.raises(ModelMismatch, match="rrm 99"):
        build_judge(newer, create_backend(runtime.settings), runtime.settings)
    assert judge_spec(runtime.judge_for(spec), "auto") == spec


def test_the_tabs_judge_with_the_chosen_format_into_a_run_named_after_it(runtime: Runtime) -> None:
    from rrm_ui.protocol import FORMATS
    from rrm_ui.services.judging import judge_choices
    from rrm_ui.ui.tabs import batch
    from rrm_ui.ui.tabs import judge as judge_tab

    assert [name for _, name in judge_choices()] == list(FORMATS)
    repo = runtime.repo
    items = tuple(ImportedItem(f"y{k}", f"q{k}?", (f"one {k}", f"two {k}"), k + 1) for k in range(2))
    ds = repo.create_dataset(ImportedDataset("chosen", "/c.jsonl", "pairwise", items))
    ctx = AppContext(runtime, JobManager(repo, runtime), login=False)
    try:
        form = judge_tab.JudgeForm("Which?", ["Four.", "Five."], BUDGET, 1, False, False, "auto", "mtbench-v2")
        live = judge_tab.start(ctx, None, form)
        snap = live.wait(240)
        assert snap.error is None, snap.error
        run = next(r for r in repo.runs() if r.id == snap.run_id)
        assert live.spec.judge == JudgeSpec.from_run(run).judge == "mtbench-v2" and ":mtbench-v2:" in run.name
        said = batch.start_job(ctx, None, ds.name, BUDGET, 1, False, False, "pair", "", "fastchat-pair-v2")
        assert said.startswith("Started job"), said
        job = ctx.jobs.jobs(dataset_id=ds.id)[0]  # newest first; the module's runtime ran other jobs
        assert _wait(ctx, job.id, {JobStatus.DONE, JobStatus.FAILED}) is JobStatus.DONE
        job_run = next(r for r in repo.runs(ds.id) if r.id == job.run_id)
        assert (job_run.template, job_run.name.split(":")[1]) == ("fastchat-pair-v2", "fastchat-pair-v2")
        judged = repo.item_judgments(repo.items(ds.id)[0].db_id)
        assert sorted(judged["a"]) == [0, 1]  # games = 2: both orders without --swap
    finally:
        ctx.jobs.shutdown()


def test_the_order_and_stopping_menus_make_the_same_spec_as_the_command_line(runtime: Runtime) -> None:
    """--order shuffled and --adaptive --stopping beta from the CLI, the Judge tab's menus and the Batch tab's
    menus: one spec, stored by the runs they create."""
    from rrm_ui.ui.tabs import batch
    from rrm_ui.ui.tabs import judge as judge_tab

    repo = runtime.repo
    items = tuple(ImportedItem(f"y{k}", f"q{k}?", (f"one {k}", f"two {k}"), k + 1) for k in range(2))
    ds = repo.create_dataset(ImportedDataset("menus", "/m.jsonl", "pairwise", items))
    ctx = AppContext(runtime, JobManager(repo, runtime), login=False)
    shuffled = next(w for w, v in controls.ORDER_CHOICES.items() if v == "shuffled")
    beta = next(w for w, v in controls.STOPPING_CHOICES.items() if v == "beta")
    try:
        argv = ["judge", "in.jsonl", "--out", "o.jsonl", "--backend", "transformers", "--model",
                runtime.settings.model, "--max-tokens", str(BUDGET), "--seed", str(SEED), "--votes", "2",
                "--adaptive", "--order", "shuffled", "--stopping", "beta", "--strategy", "pair",
                "--escalate-to", str(2 * BUDGET)]  # fmt: skip
        args = build_parser().parse_args(argv)
        settings = settings_from(args, database_url=runtime.settings.database_url)
        cli = make_spec(create_backend(settings), settings, compute=compute_from(args), strategy=args.strategy)
        assert cli.compute == Compute(votes=2, adaptive=True, order="shuffled", stopping="beta", escalate_to=2 * BUDGET)

        form = judge_tab.JudgeForm("Which?", ["Four.", "Five."], BUDGET, 2, False, True, "auto", None, shuffled, beta,
                                   2 * BUDGET)  # fmt: skip
        live = judge_tab.start(ctx, None, form)
        snap = live.wait(240)
        assert snap.error is None, snap.error
        tab_run = next(r for r in repo.runs() if r.id == snap.run_id)

        said = batch.start_job(ctx, None, ds.name, BUDGET, 2, False, True, "pair", "", None, shuffled, beta,
                               2 * BUDGET)  # fmt: skip
        assert said.startswith("Started job"), said
        job = ctx.jobs.jobs(dataset_id=ds.id)[0]
        job_run = next(r for r in repo.runs(ds.id) if r.id == job.run_id)
        assert cli == live.spec == JudgeSpec.from_run(tab_run) == JudgeSpec.from_run(job_run)
        assert "shuffled order" in live_mode(job_run) and "Beta 0.95" in live_mode(job_run)
        assert f"thinking up to {2 * BUDGET}" in live_mode(job_run)
        # a cap at or below the typed budget, or without adaptive, is refused with the reason
        low = judge_tab.JudgeForm("Which?", ["Four.", "Five."], BUDGET, 2, False, True, "auto", None, None, None,
                                  BUDGET)  # fmt: skip
        (refused,) = judge_tab.stream(ctx, None, low)
        assert "Cannot judge" in refused.status and "must be above the thinking budget" in refused.status
        said = batch.start_job(ctx, None, ds.name, BUDGET, 2, False, False, "pair", "", None, None, None, 2 * BUDGET)
        assert said.startswith("**Not started:**") and "needs adaptive" in said
        # with both orders the order menu has nothing to decide: every vote is judged both ways
        both = controls.compute_from_form(2, True, False, shuffled, None)
        assert both.swap and both.order == "given"
        _wait(ctx, job.id, {JobStatus.DONE, JobStatus.FAILED})
    finally:
        ctx.jobs.shutdown()


def live_mode(run) -> str:  # noqa: ANN001
    from rrm_ui.analysis.frames import compute_mode

    return compute_mode(run.kind, run.compute)
