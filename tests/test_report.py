"""``rrm-ui report`` on LLMBar pairs with three annotators' labels, two external judges and one RRM run.

Everything is stored through the Repository as the CLI commands store it (``import``, then labels
and external verdicts attached to the data set afterwards, an RRM run's results). The report is
read as the command prints it (JSON and Markdown), and every figure is computed again here with
plain loops over what was stored (Wilson intervals, Cohen's kappa and its SE, Krippendorff's alpha
from ``test_metrics.ref_alpha``, majorities, three-way choices, judge vs judge, flips, splits and
token totals), independently of ``rrm_ui.analysis``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pytest

from rrm_ui.cli import main
from rrm_ui.domain import Choice, Compute, ImportedLabel, ImportedVerdict
from rrm_ui.io.importers import PRESETS
from rrm_ui.services.datasets import import_file
from rrm_ui.storage import Repository, make_engine, upgrade
from tests.conftest import ROOT, llmbar_subset
from tests.test_dashboards import _judgment, _outcome, _result, kappa, wilson
from tests.test_metrics import ref_alpha

N_ITEMS = 36
ANNOTATORS = ("ann1", "ann2", "ann3")
EXTERNAL = ("judge-x", "judge-y")
RRM = "rrm-2x2"


@dataclass
class Stored:
    url: str
    dataset: str
    gold: dict[str, str]  # ext id -> A / B
    labels: dict[tuple[str, str], str]  # (annotator, ext id) -> choice
    model: dict[str, dict[str, str]]  # run -> ext id -> A / B / none (two-way)
    model3: dict[str, dict[str, str]]  # run -> ext id -> A / B / tie / none
    samples: dict[str, list[tuple[int, int, int, int | None]]]  # the RRM run's samples per ext id
    consistent: dict[str, bool | None]
    reasoning: int  # the RRM run's reasoning tokens, summed
    completion: int


@pytest.fixture(scope="module")
def stored(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    tmp = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{tmp / 'report.db'}"
    engine = make_engine(url)
    upgrade(engine)
    repo = Repository(engine)
    ds = import_file(repo, llmbar_subset(shared_data, tmp, N_ITEMS), name="llmbar-report", mapping=PRESETS["llmbar"])
    items = repo.items(ds.id)
    gold = {it.item.id: "A" if it.gold_tiers[0] < it.gold_tiers[1] else "B" for it in items}
    rng = random.Random(12)
    ids = [it.item.id for it in items]
    plan = {"ann1": ids[:28], "ann2": ids[8:], "ann3": ids[4:32]}  # overlaps of two and of three
    labels: dict[tuple[str, str], str] = {}
    for name in ANNOTATORS:
        batch = []
        for ext in plan[name]:
            u = rng.random()
            other = "B" if gold[ext] == "A" else "A"
            choice = gold[ext] if u < 0.6 else other if u < 0.85 else "tie" if u < 0.95 else "both_bad"
            batch.append(ImportedLabel(ext, name, Choice(choice)))
            labels[(name, ext)] = choice
        assert repo.attach_labels(ds.id, batch) == len(batch)  # a label set attached after the import
    model: dict[str, dict[str, str]] = {}
    model3: dict[str, dict[str, str]] = {}
    for run in EXTERNAL:  # two other judges' verdicts, with ties and "no verdict"
        verdicts, two, three = [], {}, {}
        for ext in ids[: N_ITEMS - 3]:  # not every item: the judges share most of them
            u = rng.random()
            other = "B" if gold[ext] == "A" else "A"
            c = gold[ext] if u < 0.65 else other if u < 0.85 else "tie" if u < 0.93 else None
            verdicts.append(ImportedVerdict(ext, None if c is None else Choice(c)))
            two[ext] = c if c in ("A", "B") else "none"
            three[ext] = "none" if c is None else c
        repo.attach_external_run(ds.id, run, verdicts)
        model[run], model3[run] = two, three
    settings = {"backend": "test", "model": "known", "template": "rrm", "template_version": "1", "strategy": "pair",
                "sampling": {}}  # fmt: skip
    run, _ = repo.get_or_create_run(ds.id, RRM, compute=vars(Compute(votes=2, swap=True)), **settings)
    samples, consistent, two, three = {}, {}, {}, {}
    reasoning = completion = 0
    for it in items[3:]:
        right = 0 if gold[it.item.id] == "A" else 1

        def draw(right: int = right) -> int | None:
            u = rng.random()
            return None if u < 0.12 else right if u < 0.7 else 1 - right

        s = [(a, b, k, draw()) for a, b in ((0, 1), (1, 0)) for k in range(2)]
        js = [_judgment(a, b, k, w, rng) for a, b, k, w in s]
        out = _outcome(s, js)
        repo.save_result(run.id, it.db_id, _result(it.item.id, out))
        samples[it.item.id], consistent[it.item.id] = s, out.position_consistent
        votes = Counter(w for *_x, w in s if w is not None)
        two[it.item.id] = {0: "A", 1: "B"}.get(out.winner, "none")
        three[it.item.id] = two[it.item.id] if out.winner is not None else "tie" if votes else "none"
        reasoning += sum(j.reasoning_tokens for j in js)
        completion += sum(j.completion_tokens for j in js)
    model[RRM], model3[RRM] = two, three
    return Stored(url, ds.name, gold, labels, model, model3, samples, consistent, reasoning, completion)


def run_report(stored: Stored, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["report", "--dataset", stored.dataset, "--db", stored.url, *args]) == 0
    return capsys.readouterr().out


# --- independent figures --------------------------------------------------------------------------


def majority(stored: Stored) -> dict[str, str]:
    per: dict[str, Counter] = defaultdict(Counter)
    for (_name, ext), c in stored.labels.items():
        per[ext][c] += 1
    out = {}
    for ext, c in per.items():
        (top, n), *rest = c.most_common()
        out[ext] = "no_majority" if rest and rest[0][1] == n else top
    return out


def references(stored: Stored, reference: str) -> list[tuple[str, str, str]]:
    """(run, ext id, reference choice) for every reference of the kind on an item the run judged."""
    if reference == "gold":
        refs = [(ext, c) for ext, c in stored.gold.items()]
    elif reference == "majority":
        refs = sorted(majority(stored).items())
    else:
        refs = [(ext, c) for (name, ext), c in sorted(stored.labels.items()) if reference in ("humans", name)]
    return [(run, ext, c) for run, choices in stored.model.items() for ext, c in refs if ext in choices]


def check_estimate(got: dict, pairs: list[tuple[str, str]], what: str) -> None:
    n = len(pairs)
    assert got["n"] == n
    if what == "agreement":
        p, lo, hi = wilson(sum(x == y for x, y in pairs), n)
        assert (got["value"], got["low"], got["high"]) == (pytest.approx(p), pytest.approx(lo), pytest.approx(hi))
    else:
        k, se = kappa(pairs)
        assert got["value"] == pytest.approx(k)
        assert got["low"] == pytest.approx(max(-1.0, k - 1.96 * se))
        assert got["high"] == pytest.approx(min(1.0, k + 1.96 * se))


def test_report_figures_match_an_independent_computation(stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    figures = json.loads(run_report(stored, capsys, "--format", "json"))
    assert figures["scope"] == {"dataset": stored.dataset, "runs": [], "reference": "humans"}
    c = figures["counts"]
    assert (c["items"], c["runs"], c["labels"], c["annotators"]) == (N_ITEMS, 3, len(stored.labels), 3)
    maj = majority(stored)
    assert (c["labelled_comparisons"], c["no_majority"]) == (len(maj), sum(m == "no_majority" for m in maj.values()))
    assert c["no_majority"] > 0
    rows = {(r["reference"], r["run"]): r for r in figures["by_reference"]}
    for reference in ("humans", "majority", "gold", *ANNOTATORS):
        refs = references(stored, reference)
        for run in ("(all)", *stored.model):
            mine = [(r, e, c) for r, e, c in refs if run in ("(all)", r)]
            row = rows[(reference, run)]
            assert row["references"] == len(mine)
            assert row["no_majority"] == sum(c == "no_majority" for *_x, c in mine)
            decisive = [(stored.model[r][e], c) for r, e, c in mine if c in ("A", "B")]
            check_estimate(row["agreement"], decisive, "agreement")
            check_estimate(row["kappa"], decisive, "kappa")
            three = [(stored.model3[r][e], c) for r, e, c in mine if c in ("A", "B", "tie")]
            check_estimate(row["three_way_agreement"], three, "agreement")
            check_estimate(row["three_way_kappa"], three, "kappa")
    humans = [(stored.model[r][e], c) for r, e, c in references(stored, "humans") if c in ("A", "B")]
    check_estimate(figures["headline"]["agreement"], humans, "agreement")
    check_estimate(figures["headline"]["kappa"], humans, "kappa")
    # between annotators
    units: dict[str, list[str]] = defaultdict(list)
    for (_name, ext), choice in sorted(stored.labels.items()):
        units[ext].append(choice)
    alpha = figures["annotators"]["alpha"]
    assert alpha["value"] == pytest.approx(ref_alpha(units))
    assert alpha["n"] == sum(len(v) >= 2 for v in units.values())
    assert alpha["low"] <= alpha["value"] <= alpha["high"]
    pairs = {(p["rater_1"], p["rater_2"]): p for p in figures["annotators"]["pairs"]}
    assert set(pairs) == set(combinations(ANNOTATORS, 2))
    for (a, b), p in pairs.items():
        shared = [(stored.labels[(a, e)], stored.labels[(b, e)]) for (n, e) in stored.labels if n == a
                  and (b, e) in stored.labels]  # fmt: skip
        check_estimate(p["agreement"], shared, "agreement")
        check_estimate(p["kappa"], shared, "kappa")
    # judge vs judge
    judges = {(j["run_1"], j["run_2"]): j for j in figures["judges"]}
    assert set(judges) == set(combinations(sorted(stored.model), 2))
    for (r1, r2), j in judges.items():
        shared = [(stored.model[r1][e], stored.model[r2][e]) for e in sorted(stored.model[r1]) if e in
                  stored.model[r2]]  # fmt: skip
        check_estimate(j["agreement"], shared, "agreement")
        check_estimate(j["kappa"], shared, "kappa")
        decided = [(x, y) for x, y in shared if "none" not in (x, y)]
        assert (j["both_decided"], j["agree_decided"]) == (len(decided), sum(x == y for x, y in decided))
    # flips, vote splits, compute
    both = [v for v in stored.consistent.values() if v is not None]
    flip = figures["flip_rate"]["overall"]
    p, lo, hi = wilson(sum(v is False for v in both), len(both))
    assert (flip["n"], flip["value"], flip["low"]) == (len(both), pytest.approx(p), pytest.approx(lo))
    (by_run,) = figures["flip_rate"]["by_run"]
    assert (by_run["run"], by_run["inconsistent"], by_run["judged_both_orders"]) == (RRM, sum(v is False for v in
                                                                                         both), len(both))  # fmt: skip
    splits: Counter = Counter()
    for s in stored.samples.values():
        v = Counter(w for *_x, w in s if w is not None)
        if v:
            splits[f"{max(v[0], v[1])}-{min(v[0], v[1])}"] += 1
    assert {r["split"]: r["items"] for r in figures["vote_splits"] if r["run"] == RRM} == dict(splits)
    totals = {t["run"]: t for t in figures["compute"]}
    assert totals[RRM]["judgments"] == 4 * len(stored.samples) and totals[RRM]["items"] == len(stored.samples)
    assert (totals[RRM]["reasoning_tokens"], totals[RRM]["completion_tokens"]) == (stored.reasoning, stored.completion)
    for run in EXTERNAL:
        assert totals[run]["judgments"] == 0 and totals[run]["items"] == len(stored.model[run])


def test_report_scope_runs_reference_and_markdown(stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    figures = json.loads(run_report(stored, capsys, "--run", EXTERNAL[0], "--run", RRM, "--reference", "majority"))
    assert figures["scope"] == {"dataset": stored.dataset, "runs": [EXTERNAL[0], RRM], "reference": "majority"}
    refs = [(r, e, c) for r, e, c in references(stored, "majority") if r in (EXTERNAL[0], RRM)]
    check_estimate(figures["headline"]["agreement"], [(stored.model[r][e], c) for r, e, c in refs if c in ("A", "B")],
                   "agreement")  # fmt: skip
    assert {(j["run_1"], j["run_2"]) for j in figures["judges"]} == {(EXTERNAL[0], RRM)}
    text = run_report(stored, capsys, "--reference", "ann2", "--format", "markdown")
    assert text.startswith(f"# Report: {stored.dataset} (every run; reference ann2)")
    for heading in ("## Counts", "## Headline", "## Agreement by reference and run", "## Between annotators",
                    "## Judge vs judge", "## Flip rate by run", "## Vote splits", "## Compute"):  # fmt: skip
        assert heading in text
    assert "| ann1 | ann2 |" in text and f"| {EXTERNAL[0]} | {EXTERNAL[1]} |" in text


def test_report_refuses_what_is_not_there(stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    cases = ((["--dataset", "nope"], "no data set named 'nope' (stored: llmbar-report)"),
             (["--dataset", stored.dataset, "--run", "ghost"], "has no run named 'ghost'"),
             (["--dataset", stored.dataset, "--reference", "zed"], "its annotators: ann1, ann2, ann3"))  # fmt: skip
    for args, message in cases:
        assert main(["report", *args, "--db", stored.url]) == 2
        assert message in capsys.readouterr().err


def test_report_command_runs_without_gradio_or_plotly(stored: Stored) -> None:
    code = ("import sys; from rrm_ui.cli import main; rc = main(sys.argv[1:]); "
            "assert 'gradio' not in sys.modules and 'plotly' not in sys.modules, 'heavy import'; "
            "sys.exit(rc)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, "report", "--dataset", stored.dataset, "--db", stored.url,
                           "--format", "markdown"], capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "## Judge vs judge" in proc.stdout


def test_report_scores_runs_against_gold_as_their_papers_do(stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    """``runs[].paper_score_gold``: against gold, a pair the run chose nothing on counts 0.5 (the RRM
    judge's format and an external judge: RewardBench's rule), a right choice 1, a wrong one 0; computed
    here from the choices the fixture stored."""
    figures = json.loads(run_report(stored, capsys, "--format", "json"))
    got = {r["run"]: r for r in figures["runs"]}
    for run, choices in stored.model.items():
        points = [1.0 if c == stored.gold[ext] else 0.5 if c == "none" else 0.0 for ext, c in choices.items()]
        assert got[run]["paper_score_gold"] == pytest.approx(sum(points) / len(points)), run
        decided = [(c, stored.gold[ext]) for ext, c in choices.items()]
        assert got[run]["agreement_gold"] == pytest.approx(sum(c == g for c, g in decided) / len(decided))


def test_each_formats_papers_rule_for_a_missing_verdict() -> None:
    """The error scores come from the formats' own records (RewardBench 0.5, RM-R1 0, FastChat drops the
    match; a format without a rule and an external run: RewardBench's 0.5)."""
    import math

    from rrm_ui.analysis.frames import error_score

    assert error_score("rrm") == error_score("mtbench-v2") == 0.5
    assert error_score("rm-r1-instruct") == error_score("rm-r1-reasoning") == 0.0
    assert math.isnan(error_score("fastchat-pair-v2"))
    assert error_score("autoj-pairwise-tie") == error_score("pandalm") == error_score(None) == 0.5
