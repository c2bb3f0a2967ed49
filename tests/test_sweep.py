"""Compute sweeps (docs/sweep.md): the points and the chart on handmade judgments against a count written
here; the grid, the specs and the grouping of runs; the Batch form's checks; and real sweeps with the demo
judge on LLMBar pairs (the command, and the Batch form's jobs read by the Dashboards' section), whose
points are checked against an independent computation from the stored judgments."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rrm_ui.analysis.sweep import POINT_COLUMNS, doubling, sweep_figure, sweep_points
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, JudgeSpec, Sampling
from rrm_ui.services import open_repository
from rrm_ui.services.judging import default_run_name
from rrm_ui.services.sweep import (
    find_sweeps,
    parse_grid,
    sweep_compute,
    sweep_key,
    sweep_name,
    sweep_specs,
)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """The Wilson score interval, written out again (Wilson 1927)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


# --- the points and the chart, on handmade judgments --------------------------------------------


def handmade(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Two runs (budgets 32 and 128, 4 votes per order, both orders) over 30 pair items: random choices
    (A, B, none), random tokens, a few failed tries that were tried again (real tokens, no vote); gold
    on 25 of the items."""
    rng = random.Random(seed)
    rows, refs = [], []
    runs = pd.DataFrame({"run_id": [7, 9], "run": ["d:r:m:aaa", "d:r:m:bbb"], "budget": [128, 32], "votes": [4, 4]})
    for run_id in (7, 9):
        for item in range(30):
            for a, b in ((0, 1), (1, 0)):
                for sample in range(4):
                    if rng.random() < 0.1:  # a failed try, tried again
                        rows.append((run_id, item, a, b, sample, "none", True, rng.randint(0, 50), "error"))
                    choice = rng.choice(["A", "A", "B", "none"])
                    status = "truncated" if choice == "none" and rng.random() < 0.7 else "ok"
                    rows.append((run_id, item, a, b, sample, choice, False, rng.randint(10, 200), status))
            if item < 25:
                refs.append((run_id, item, 0, 1, rng.choice("AB"), True))
            refs.append((run_id, item, 0, 1, "tie", False))  # not decisive: never counted
    j = pd.DataFrame(rows, columns=["run_id", "item_id", "a", "b", "sample", "choice", "retried", "completion_tokens",
                                    "status"])  # fmt: skip
    j["i"], j["j"] = j[["a", "b"]].min(axis=1), j[["a", "b"]].max(axis=1)
    r = pd.DataFrame(refs, columns=["run_id", "item_id", "i", "j", "ref_choice", "decisive"])
    return j, r, runs


def expected(j: pd.DataFrame, r: pd.DataFrame, run_id: int, v: int) -> dict:
    """The point written out: per item, the votes of its counted samples' last tries, the majority, gold."""
    agree = n = undecided = 0
    tokens = {}
    gold = {row.item_id: row.ref_choice for row in r.itertuples() if row.decisive and row.run_id == run_id}
    rows = [row for row in j.itertuples() if row.run_id == run_id and row.sample < v]
    for item in sorted({row.item_id for row in rows}):
        mine = [row for row in rows if row.item_id == item]
        tokens[item] = sum(row.completion_tokens for row in mine)
        lead = sum((row.choice == "A") - (row.choice == "B") for row in mine if not row.retried)
        choice = "A" if lead > 0 else "B" if lead < 0 else "none"
        undecided += choice == "none"
        if item in gold:
            n += 1
            agree += choice == gold[item]
    last = [row for row in rows if not row.retried]
    p, lo, hi = wilson(agree, n)
    return {"pairs": len(tokens), "tokens_per_pair": sum(tokens.values()) / len(tokens), "n": n, "agree": agree,
            "agreement": p, "low": lo, "high": hi, "undecided": undecided,
            "truncated": sum(row.status == "truncated" for row in last) / len(last)}  # fmt: skip


def test_points_match_a_count_written_out() -> None:
    j, r, runs = handmade()
    points = sweep_points(j, r, runs, [1, 2, 4, 8])
    assert list(points.columns) == POINT_COLUMNS
    # smallest budget first; 8 votes is more than the runs have: left out
    assert list(zip(points["budget"], points["votes"], strict=True)) == [(32, 1), (32, 2), (32, 4), (128, 1),
                                                                         (128, 2), (128, 4)]  # fmt: skip
    for p in points.itertuples(index=False):
        run_id = int(runs.loc[runs["budget"] == p.budget, "run_id"].iat[0])
        want = expected(j, r, run_id, p.votes)
        for key, value in want.items():
            assert getattr(p, key) == pytest.approx(value), (p.budget, p.votes, key)
    # None: 1, 2, 4, ... and the run's votes
    assert sorted(sweep_points(j, r, runs)["votes"].unique()) == [1, 2, 4]
    assert [doubling(v) for v in (1, 3, 8, 12)] == [[1], [1, 2, 3], [1, 2, 4, 8], [1, 2, 4, 8, 12]]


def test_a_tie_of_votes_agrees_with_nothing() -> None:
    """Two votes split 1-1 are no majority: counted against the reference, as the dashboards count an
    undecided pair."""
    j = pd.DataFrame({"run_id": [1, 1], "item_id": [5, 5], "a": [0, 0], "b": [1, 1], "i": [0, 0], "j": [1, 1],
                      "sample": [0, 1], "choice": ["A", "B"], "retried": [False, False],
                      "completion_tokens": [10, 30], "status": ["ok", "ok"]})  # fmt: skip
    r = pd.DataFrame({"run_id": [1], "item_id": [5], "i": [0], "j": [1], "ref_choice": ["A"], "decisive": [True]})
    runs = pd.DataFrame({"run_id": [1], "run": ["x"], "budget": [64], "votes": [2]})
    one, two = sweep_points(j, r, runs).itertuples(index=False)
    assert (one.agree, one.n, one.undecided, one.tokens_per_pair) == (1, 1, 0, 10)
    assert (two.agree, two.n, two.undecided, two.tokens_per_pair) == (0, 1, 1, 40)


def test_the_chart_draws_sequential_and_parallel_on_one_log_axis() -> None:
    j, r, runs = handmade()
    points = sweep_points(j, r, runs, [1, 2, 4])
    fig = sweep_figure(points, reference="gold")
    assert fig.layout.xaxis.type == "log"
    names = [t.name for t in fig.data]
    assert names == ["parallel: votes at budget 32", "parallel: votes at budget 128", "sequential: thinking budget, "
                     "1 vote"]  # fmt: skip
    seq = fig.data[-1]
    ones = points[points["votes"] == 1]
    assert list(seq.x) == pytest.approx(list(ones["tokens_per_pair"]))
    assert list(seq.y) == pytest.approx(list(ones["agreement"] * 100))
    assert list(seq.error_y.array) == pytest.approx(list((ones["high"] - ones["agreement"]) * 100))
    for trace, budget in zip(fig.data[:2], (32, 128), strict=True):
        mine = points[points["budget"] == budget]
        assert list(trace.y) == pytest.approx(list(mine["agreement"] * 100))
        assert [json.loads(c)["run"] for c in trace.customdata] == list(mine["run"])  # a click lists the run
    assert fig.data[1].line.dash == "solid" and fig.data[0].line.dash == "dot"  # the largest budget stands out
    empty = sweep_figure(points.iloc[0:0], reference="gold")
    assert "no sweep point" in empty.layout.annotations[0].text


# --- the grid, the specs, the grouping ------------------------------------------------------------


def test_the_grid_reads_k_and_refuses_what_is_not_a_count() -> None:
    assert parse_grid("512, 1k,2K 4096 512", "budgets") == (512, 1024, 2048, 4096)
    assert parse_grid([4, 1, 2], "votes") == (1, 2, 4)
    for bad, said in (("512, lots", "'lots' is not a whole number"), ("", "at least one"), ("0, 2", "at least 1")):
        with pytest.raises(ValueError, match=said):
            parse_grid(bad, "budgets")


def test_one_spec_per_budget_with_the_most_votes_named_as_an_ordinary_run() -> None:
    base = JudgeSpec("rrm", "1", "transformers", "/m/demo", Sampling(max_tokens=8192, seed=3),
                     Compute(votes=1, swap=True, budget_mode="force"))  # fmt: skip
    specs = sweep_specs(base, [128, 32], [1, 3])
    assert [s.sampling.max_tokens for s in specs] == [32, 128]
    assert all(s.compute == Compute(votes=3, swap=True, budget_mode="force") for s in specs)
    assert all(s.sampling.seed == 3 for s in specs)
    # the run's name is the one rrm-ui judge gives the same settings: the sweep continues such a run
    same = JudgeSpec("rrm", "1", "transformers", "/m/demo", Sampling(max_tokens=32, seed=3),
                     Compute(votes=3, swap=True, budget_mode="force"))  # fmt: skip
    assert default_run_name("d", specs[0]) == default_run_name("d", same)
    assert len({sweep_key(s) for s in specs}) == 1 and sweep_name("d", specs[0]).startswith("d:rrm:demo:sweep-")
    other = JudgeSpec("rrm", "1", "transformers", "/m/demo", Sampling(max_tokens=32, seed=4), specs[0].compute)
    assert sweep_key(other) != sweep_key(specs[0])
    with pytest.raises(ValueError, match="adaptive"):
        sweep_compute(Compute(adaptive=True), 4)


def test_runs_that_differ_only_in_budget_and_votes_form_one_sweep(tmp_path: Path) -> None:
    from rrm_ui.domain import ImportedDataset, ImportedItem
    from rrm_ui.services.judging import ensure_run

    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}"))
    ds = repo.create_dataset(ImportedDataset("d", "/d.jsonl", "pairwise", (ImportedItem("x", "q", ("a", "b"), 1),)))
    base = JudgeSpec("rrm", "1", "vllm", "/m/demo", Sampling(max_tokens=64))
    made = {}
    for budget, votes in ((64, 2), (64, 4), (256, 4), (1024, 1)):
        spec = JudgeSpec("rrm", "1", "vllm", "/m/demo", Sampling(max_tokens=budget), Compute(votes=votes))
        made[budget, votes] = ensure_run(repo, ds.id, default_run_name("d", spec), spec)[0]
    lone = JudgeSpec("rrm", "1", "vllm", "/m/demo", Sampling(max_tokens=64, temperature=1.0), Compute(votes=1))
    ensure_run(repo, ds.id, default_run_name("d", lone), lone)  # one point alone: no sweep
    adaptive = JudgeSpec("rrm", "1", "vllm", "/m/demo", Sampling(max_tokens=128), Compute(adaptive=True))
    ensure_run(repo, ds.id, default_run_name("d", adaptive), adaptive)
    (sweep,) = find_sweeps(repo, ds)
    assert sweep.budgets == (64, 256, 1024) and sweep.name == sweep_name("d", base)
    assert [r.run.id for r in sweep.runs] == [made[64, 4].id, made[256, 4].id, made[1024, 1].id]  # the most votes
    assert "budgets 64, 256, 1,024" in sweep.describe()


def test_the_batch_form_checks_the_grid_as_the_judge_form_checks_one(tmp_path: Path) -> None:
    from rrm_ui.services.datasets import import_file
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui.context import AppContext
    from rrm_ui.ui.tabs import batch
    from tests.test_ui_pages import Req, shown, write_jsonl

    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'ui.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    ctx = AppContext(rt, JobManager(rt.repo, rt), login=False)
    try:
        import_file(ctx.repo, write_jsonl(tmp_path / "p.jsonl", [{"query": "q", "response_a": "a", "response_b": "b"}]),
                    name="p")  # fmt: skip
        assert batch.start_sweep(ctx, Req(), None, "32", "1", False, "cutoff", "auto") == "Choose a data set first."
        said = shown(batch.start_sweep(ctx, Req(), "p", "32, 40000", "1", False, "cutoff", "auto"))
        assert "Sweep not started" in said and "from 1 to 32,768, not 40000" in said, said
        said = shown(batch.start_sweep(ctx, Req(), "p", "32", "1, 20", False, "cutoff", "auto"))
        assert "Sweep not started" in said and "from 1 to 8, not 20" in said, said
        said = shown(batch.start_sweep(ctx, Req(), "p", "32, 1k", "two", False, "cutoff", "auto"))
        assert "'two' is not a whole number" in said, said
        said = shown(batch.start_sweep(ctx, Req(), "p", "32", "1", False, "cutoff", "auto"))
        assert "Sweep not started" in said and "model" in said  # refused for the missing model only
        assert ctx.jobs.jobs() == []
    finally:
        ctx.jobs.shutdown()
        rt.close()


def test_the_dashboards_section_says_how_to_start_a_sweep_and_lists_one_without_judgments(tmp_path: Path) -> None:
    """No sweep in scope: the chart says where to start one. Runs of one data set that differ only in the
    budget are listed as a sweep (its points empty until judged); another data set's scope lists none."""
    from rrm_ui.domain import ImportedDataset, ImportedItem
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.judging import ensure_run
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui.context import AppContext
    from rrm_ui.ui.tabs import sweeps
    from tests.test_ui_pages import Req

    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'ui.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    ctx = AppContext(rt, JobManager(rt.repo, rt), login=False)
    try:
        view = sweeps.sweep_view(ctx, Req(), None, "humans", None)
        assert view.choices == [] and view.chosen is None
        assert "start one in the Batch tab" in view.figure.layout.annotations[0].text
        for name in ("d", "e"):
            ctx.repo.create_dataset(ImportedDataset(name, f"/{name}.jsonl", "pairwise",
                                                    (ImportedItem("x", "q", ("a", "b"), 1),)))  # fmt: skip
        ds = ctx.repo.dataset("d")
        for budget in (32, 128):
            spec = JudgeSpec("rrm", "1", "vllm", "/m/demo", Sampling(max_tokens=budget), Compute(votes=2))
            ensure_run(ctx.repo, ds.id, default_run_name("d", spec), spec)
        view = sweeps.sweep_view(ctx, Req(), "d", "gold", "no such sweep")
        ((label, name),) = view.choices
        assert view.chosen == name and "budgets 32, 128" in label
        assert view.table.empty and "no sweep point" in view.figure.layout.annotations[0].text
        assert sweeps.sweep_view(ctx, Req(), "e", "gold", name).choices == []
    finally:
        ctx.jobs.shutdown()
        rt.close()


# --- real sweeps with the demo judge --------------------------------------------------------------


def stored_points(db: str, dataset: str, budgets: list[int], votes: list[int]) -> dict[tuple[int, int], dict]:
    """Every (budget, votes) point recomputed from the stored rows with plain loops: the judgments' last
    tries below the vote count vote, every try's tokens count, gold from the items' tiers."""
    repo = open_repository(Settings(database_url=db))
    (ds,) = [d for d in repo.datasets() if d.name == dataset]
    items = repo.frame("items")
    items = items[items["dataset_id"] == ds.id]
    gold = {row.id: min(range(2), key=lambda k: row.gold_tiers[k]) for row in items.itertuples()
            if row.gold_tiers is not None and row.gold_tiers[0] != row.gold_tiers[1]}  # fmt: skip
    js = repo.frame("judgments")
    runs = {r.sampling["max_tokens"]: r for r in repo.runs(ds.id)}
    out = {}
    for budget in budgets:
        mine = js[js["run_id"] == runs[budget].id]
        last = mine.groupby(["item_id", "a", "b", "sample"])["attempt"].transform("max") == mine["attempt"]
        for v in votes:
            agree = n = 0
            tokens = []
            for item_id in sorted(set(mine["item_id"])):
                rows = mine[(mine["item_id"] == item_id) & (mine["sample"] < v)]
                tokens.append(int(rows["completion_tokens"].fillna(0).sum()))
                count = {0: 0, 1: 0}
                for row in rows[last[rows.index]].itertuples():
                    if row.verdict in ("A", "B"):
                        count[row.a if row.verdict == "A" else row.b] += 1
                winner = None if count[0] == count[1] else max(count, key=count.get)
                if item_id in gold:
                    n += 1
                    agree += winner == gold[item_id]
            out[budget, v] = {"agree": agree, "n": n, "tokens_per_pair": sum(tokens) / len(tokens),
                              "pairs": len(tokens), "run": runs[budget].name}  # fmt: skip
    return out


def llmbar_file(shared_data: Path, tmp_path: Path, n: int) -> Path:
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:n]
    path = tmp_path / "llmbar.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.slow
def test_a_sweep_with_the_demo_judge_matches_its_stored_judgments(
    demo_judge: Path, shared_data: Path, tmp_path: Path
) -> None:
    """``rrm-ui sweep`` over 10 LLMBar pairs on the transformers backend, budgets 32 and 128 x votes 1 and 3:
    the printed points are the stored judgments' (recomputed here), the runs are ordinary runs named from
    their settings, and a second call judges nothing and prints the same points. The demo judge's long
    reasoning closes at its 91st token: cut off at 32 tokens, never at 128."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "rrm_ui", *args], capture_output=True, text=True,
                              timeout=900, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    cli("import", str(llmbar_file(shared_data, tmp_path, 10)), "--db", db, "--preset", "llmbar", "--name", "llmbar")
    args = ["sweep", "--dataset", "llmbar", "--db", db, "--budgets", "32,128", "--votes", "1,3", "--backend",
            "transformers", "--model", str(demo_judge), "--device", "cpu", "--seed", "5", "--format", "json",
            "--quiet"]  # fmt: skip
    first = json.loads(cli(*args).stdout)
    assert first["reference"] == "gold" and [r["budget"] for r in first["runs"]] == [32, 128]
    assert [r["judged"] for r in first["runs"]] == [10, 10] and first["seconds"] > 0
    want = stored_points(db, "llmbar", [32, 128], [1, 3])
    assert [(p["budget"], p["votes"]) for p in first["points"]] == sorted(want)
    for p in first["points"]:
        w = want[p["budget"], p["votes"]]
        assert (p["agree"], p["n"], p["pairs"], p["run"]) == (w["agree"], w["n"], w["pairs"], w["run"])
        assert p["tokens_per_pair"] == pytest.approx(w["tokens_per_pair"])
        assert (p["agreement"], p["low"], p["high"]) == pytest.approx(wilson(w["agree"], w["n"]))
    by = {(p["budget"], p["votes"]): p for p in first["points"]}
    assert by[128, 1]["truncated"] == 0 and by[128, 3]["truncated"] == 0
    assert by[32, 3]["truncated"] > 0  # 30 samples, each long with about 0.2: all short has p < 0.001
    assert by[32, 3]["tokens_per_pair"] == pytest.approx(3 * by[32, 1]["tokens_per_pair"], rel=0.5)
    # ordinary runs: named from their settings, in the report like any run
    repo = open_repository(Settings(database_url=db))
    names = sorted(r.name for r in repo.runs())
    assert names == sorted(r["run"] for r in first["runs"]) and all(":sweep-" not in n for n in names)
    again = json.loads(cli(*args).stdout)
    assert [r["judged"] for r in again["runs"]] == [0, 0] and again["points"] == first["points"]
    table = cli(*args[:-3], "--report-only").stdout  # no model loaded, the same points as a table
    assert "agreement with gold" in table and len(table.strip().splitlines()) == 1 + 4


@pytest.mark.slow
def test_the_batch_form_queues_a_sweep_the_dashboards_draw(demo_judge: Path, shared_data: Path, tmp_path: Path) -> None:
    """The Batch tab's Compute sweep form starts one job per budget on the app's model; once they are done
    the Dashboards' Test-time scaling section lists the sweep and draws its points, which equal the stored
    judgments' (recomputed here)."""
    from rrm_ui.domain import JobStatus
    from rrm_ui.io.importers import PRESETS
    from rrm_ui.services.datasets import import_file
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui.context import AppContext
    from rrm_ui.ui.tabs import batch, sweeps
    from tests.test_ui_pages import Req

    db = f"sqlite:///{tmp_path / 'app.db'}"
    settings = Settings(backend="transformers", model=str(demo_judge), device="cpu", seed=2, database_url=db)
    rt = Runtime(settings, open_repository(settings))
    rt.load_model().result(300)
    ctx = AppContext(rt, JobManager(rt.repo, rt), login=False)
    try:
        import_file(ctx.repo, llmbar_file(shared_data, tmp_path, 8), name="llmbar", mapping=PRESETS["llmbar"])
        said = batch.start_sweep(ctx, Req(), "llmbar", "32, 128", "1, 2", True, "force", "auto")
        assert "Started a sweep of 2 budgets" in said, said
        jobs = ctx.jobs.jobs()
        assert len(jobs) == 2
        deadline = time.monotonic() + 600
        while any(j.status not in (JobStatus.DONE, JobStatus.FAILED) for j in ctx.jobs.jobs()):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert {j.status for j in ctx.jobs.jobs()} == {JobStatus.DONE}
        view = sweeps.sweep_view(ctx, Req(), "llmbar", "humans", None)
        (label, name), *_ = view.choices
        assert view.chosen == name and "budgets 32, 128" in label and "force, both orders" in label
        want = stored_points(db, "llmbar", [32, 128], [1, 2])
        got = view.points
        assert len(got) == 4 and len(view.table) == 4
        assert "gold" in view.figure.layout.yaxis.title.text  # no human labels: gold
        for p in got.itertuples(index=False):
            w = want[p.budget, p.votes]
            assert (p.agree, p.n, p.pairs) == (w["agree"], w["n"], w["pairs"])
            assert p.tokens_per_pair == pytest.approx(w["tokens_per_pair"])
        # forced closes: no judgment is cut off at 32 tokens, every one boxed a verdict or ran out of answer
        assert set(got["truncated"]) == {0.0}
    finally:
        ctx.jobs.shutdown()
        rt.close()
