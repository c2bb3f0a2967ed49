"""Dashboards and explorer on real LLMBar pairs with gold labels, known model verdicts and known human labels.

The model's verdicts and the humans' labels are drawn from a seeded generator and stored the way the
app stores them (``Repository.save_result`` with engine types, ``Repository.add_label``). Every
headline figure (agreement, kappa, intervals, alpha, pairwise kappa, flip rate, confusion counts,
vote splits, accuracy by votes) is then computed again here with plain loops over what was stored,
independently of ``rrm_ui.analysis``, and compared.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from rrm_ui.domain import Choice, Compute, HumanLabel, ItemResult, Judgment, PairOutcome, Status, Verdict
from rrm_ui.io.importers import PRESETS
from rrm_ui.services.datasets import import_file
from rrm_ui.services.insights import Drill, Insights, Scope
from rrm_ui.storage import Repository, make_engine, upgrade
from rrm_ui.ui.tabs import dashboard, explorer
from tests.conftest import llmbar_subset
from tests.test_metrics import ref_alpha

N_ITEMS = 40
SEARCH_WORD = "zanzibarquokka"


@dataclass
class World:
    repo: Repository
    insights: Insights
    dataset: str
    gold: dict[int, str]  # item db id -> A/B
    fixed: dict[int, list[tuple[int, int, int, int | None]]]  # item -> samples (a, b, sample, winner)
    fixed_choice: dict[int, str]
    fixed_consistent: dict[int, bool | None]
    one_vote_choice: dict[int, str]
    labels: dict[tuple[str, int], str]  # latest label per (annotator, item)
    search_item: int


def _choice(winner: int | None) -> str:
    return {0: "A", 1: "B"}.get(winner, "none")


def _judgment(a: int, b: int, sample: int, winner: int | None, rng: random.Random, word: str = "") -> Judgment:
    verdict = None if winner is None else (Verdict.A if winner == a else Verdict.B)
    status = Status.OK if verdict else Status.TRUNCATED
    tokens = rng.randint(200, 3000) if verdict else 4096
    return Judgment(a=a, b=b, sample=sample, verdict=verdict, status=status, lenient_verdict=verdict,
                    reasoning=f"thinking about it {word}", answer=f"\\boxed{{Assistant {1 if verdict == 'A' else 2}}}",
                    prompt_tokens=300, completion_tokens=tokens + 8, reasoning_tokens=tokens, ttft_s=0.1,
                    latency_s=tokens / 50, finish_reason="stop" if verdict else "length", seed=sample)  # fmt: skip


def _outcome(samples: list[tuple[int, int, int, int | None]], judgments: list[Judgment]) -> PairOutcome:
    """Votes, majority and position consistency the way the engine defines them (docs/engine.md)."""
    votes = {0: 0, 1: 0}
    per_order: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for a, b, _s, w in samples:
        if w is not None:
            votes[w] += 1
            per_order[(a, b)][w] += 1
    winner = None if votes[0] == votes[1] else (0 if votes[0] > votes[1] else 1)
    majorities = []
    for c in per_order.values():
        majorities.append(None if c[0] == c[1] else (0 if c[0] > c[1] else 1))
    consistent = None
    if len(per_order) == 2 and all(m is not None for m in majorities):
        consistent = majorities[0] == majorities[1]
    invalid = sum(1 for *_x, w in samples if w is None)
    return PairOutcome(i=0, j=1, winner=winner, votes=votes, invalid_votes=invalid, position_consistent=consistent,
                       samples_spent=len(samples), adaptive_reason=None, judgments=tuple(judgments))  # fmt: skip


def _result(item_ext: str, outcome: PairOutcome) -> ItemResult:
    ranking = () if outcome.winner is None else (outcome.winner, 1 - outcome.winner)
    return ItemResult(id=item_ext, strategy="pair", winner=outcome.winner, ranking=ranking, pairs=(outcome,),
                      template="rrm", template_version="1", model="known-verdicts", backend="test")  # fmt: skip


@pytest.fixture(scope="module")
def world(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("dash")
    return build_world(f"sqlite:///{tmp / 'dash.db'}", shared_data, tmp)


def build_world(url: str, shared_data: Path, tmp: Path) -> World:
    """LLMBar pairs with gold, two runs with seeded verdicts and three annotators' labels, stored at ``url``."""
    engine = make_engine(url)
    upgrade(engine)
    repo = Repository(engine)
    ds = import_file(repo, llmbar_subset(shared_data, tmp, N_ITEMS), name="llmbar-known", mapping=PRESETS["llmbar"])
    stored = repo.items(ds.id)
    assert len(stored) == N_ITEMS
    gold = {it.db_id: ("A" if it.gold_tiers[0] < it.gold_tiers[1] else "B") for it in stored}
    rng = random.Random(5)
    settings = {"backend": "test", "model": "known", "template": "rrm", "template_version": "1", "strategy": "pair",
                "sampling": {}}  # fmt: skip
    fixed_run, _ = repo.get_or_create_run(ds.id, "fixed-2x2", compute={**vars(Compute(votes=2, swap=True))},
                                          **settings)  # fmt: skip
    one_run, _ = repo.get_or_create_run(ds.id, "one-vote", compute={**vars(Compute(votes=1))}, **settings)
    fixed, fixed_choice, fixed_consistent, one_choice = {}, {}, {}, {}
    search_item = stored[3].db_id
    for it in stored:
        right = 0 if gold[it.db_id] == "A" else 1

        def draw(right: int = right) -> int | None:
            u = rng.random()
            return None if u < 0.1 else (right if u < 0.72 else 1 - right)

        samples = [(a, b, s, draw()) for (a, b) in ((0, 1), (1, 0)) for s in range(2)]
        word = SEARCH_WORD if it.db_id == search_item else ""
        js = [_judgment(a, b, s, w, rng, word) for a, b, s, w in samples]
        outcome = _outcome(samples, js)
        repo.save_result(fixed_run.id, it.db_id, _result(it.item.id, outcome))
        fixed[it.db_id] = samples
        fixed_choice[it.db_id] = _choice(outcome.winner)
        fixed_consistent[it.db_id] = outcome.position_consistent
        first = samples[0]  # order (0, 1), sample 0
        one = _outcome([first], [js[0]])
        repo.save_result(one_run.id, it.db_id, _result(it.item.id, one))
        one_choice[it.db_id] = _choice(one.winner)
    labels: dict[tuple[str, int], str] = {}
    ids = [it.db_id for it in stored]
    plan = {"ann1": ids[:30], "ann2": ids[10:30], "ann3": ids[20:]}
    for name, mine in plan.items():
        for item_id in mine:
            u = rng.random()
            other = "B" if gold[item_id] == "A" else "A"
            choice = gold[item_id] if u < 0.7 else other if u < 0.88 else "tie" if u < 0.95 else "both_bad"
            repo.add_label(HumanLabel(annotator=name, item_db_id=item_id, choice=Choice(choice), run_id=fixed_run.id))
            labels[(name, item_id)] = choice
    # a relabel: the latest label counts, the first stays as history
    first = ids[0]
    new = "B" if labels[("ann1", first)] != "B" else "A"
    repo.add_label(HumanLabel(annotator="ann1", item_db_id=first, choice=Choice(new), note="changed my mind"))
    labels[("ann1", first)] = new
    return World(repo, Insights(repo), ds.name, gold, fixed, fixed_choice, fixed_consistent, one_choice, labels,
                 search_item)  # fmt: skip


# --- independent arithmetic ---------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, centre - half, centre + half


def kappa(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Cohen's kappa and its large-sample SE, by hand."""
    n = len(pairs)
    po = sum(1 for x, y in pairs if x == y) / n
    cats = {c for p in pairs for c in p}
    cx, cy = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    pe = sum(cx[c] / n * cy[c] / n for c in cats)
    return (po - pe) / (1 - pe), math.sqrt(po * (1 - po) / (n * (1 - pe) ** 2))


def human_pairs(w: World, model: dict[int, str], annotator: str | None = None) -> list[tuple[str, str]]:
    return [(model[item], choice) for (name, item), choice in sorted(w.labels.items())
            if choice in ("A", "B") and (annotator is None or name == annotator)]  # fmt: skip


# --- headline figures -----------------------------------------------------------------------------


def test_model_vs_humans_agreement_and_kappa_match_hand_computation(world: World) -> None:
    d = world.insights.dashboard(Scope(runs=("fixed-2x2",)))
    pairs = human_pairs(world, world.fixed_choice)
    k = sum(1 for m, h in pairs if m == h)
    p, lo, hi = wilson(k, len(pairs))
    a = d.headline["agreement"]
    assert (a.n, a.value, a.low, a.high) == (len(pairs), pytest.approx(p), pytest.approx(lo), pytest.approx(hi))
    kap, se = kappa(pairs)
    got = d.headline["kappa"]
    assert got.value == pytest.approx(kap)
    assert (got.low, got.high) == (pytest.approx(kap - 1.96 * se), pytest.approx(kap + 1.96 * se))
    assert d.counts["references"] == len(world.labels)  # ties and both-bad are references, not decisive
    assert d.counts["decisive"] == len(pairs)


def test_breakdowns_by_annotator_and_run_and_gold(world: World) -> None:
    d = world.insights.dashboard(Scope(), group_by="annotator")
    table = d.by_group["annotator"].set_index("group")
    for name in ("ann1", "ann2", "ann3"):
        # every label is compared with both runs' verdicts on the pair
        pairs = human_pairs(world, world.fixed_choice, name) + human_pairs(world, world.one_vote_choice, name)
        assert table.loc[name, "decisive"] == len(pairs)
        assert table.loc[name, "agreement"] == pytest.approx(sum(m == h for m, h in pairs) / len(pairs))
        assert table.loc[name, "kappa"] == pytest.approx(kappa(pairs)[0])
    by_run = world.insights.dashboard(Scope(), group_by="run").by_group["run"].set_index("group")
    one = human_pairs(world, world.one_vote_choice)
    assert by_run.loc["one-vote", "agreement"] == pytest.approx(sum(m == h for m, h in one) / len(one))
    gold = d.gold_by_run.set_index("group")
    for run, model in (("fixed-2x2", world.fixed_choice), ("one-vote", world.one_vote_choice)):
        pairs = [(model[i], g) for i, g in world.gold.items()]
        assert gold.loc[run, "decisive"] == N_ITEMS
        assert gold.loc[run, "agreement"] == pytest.approx(sum(m == g for m, g in pairs) / N_ITEMS)
    ref_gold = world.insights.dashboard(Scope(runs=("fixed-2x2",), reference="gold"))
    pairs = [(world.fixed_choice[i], g) for i, g in world.gold.items()]
    assert ref_gold.headline["kappa"].value == pytest.approx(kappa(pairs)[0])


def test_confusion_matrix_counts(world: World) -> None:
    d = world.insights.dashboard(Scope(runs=("fixed-2x2",)))
    expected = Counter((choice, world.fixed_choice[item]) for (_n, item), choice in world.labels.items())
    for (human, model), count in expected.items():
        assert d.confusion.loc[human, model] == count
    assert d.confusion.to_numpy().sum() == len(world.labels)


def test_inter_annotator_alpha_and_pairwise_kappa(world: World) -> None:
    d = world.insights.dashboard(Scope())
    units: dict[int, list[str]] = defaultdict(list)
    for (_name, item), choice in sorted(world.labels.items()):
        units[item].append(choice)
    assert d.alpha.value == pytest.approx(ref_alpha(units))  # test_metrics' loop over the definition
    assert d.alpha.n == sum(1 for v in units.values() if len(v) >= 2)
    pairs = d.annotator_pairs.set_index(["rater_1", "rater_2"])
    shared = [(world.labels[("ann1", i)], world.labels[("ann2", i)]) for (n, i) in world.labels
              if n == "ann1" and ("ann2", i) in world.labels]  # fmt: skip
    assert pairs.loc[("ann1", "ann2"), "n"] == len(shared) == 20
    assert pairs.loc[("ann1", "ann2"), "kappa"] == pytest.approx(kappa(shared)[0])
    assert ("ann1", "ann3") in pairs.index and ("ann2", "ann3") in pairs.index


def test_flip_rate_vote_splits_and_margin(world: World) -> None:
    d = world.insights.dashboard(Scope(runs=("fixed-2x2",)))
    both = [c for c in world.fixed_consistent.values() if c is not None]
    assert d.flip.n == len(both)
    assert d.flip.value == pytest.approx(sum(1 for c in both if c is False) / len(both))
    splits: Counter = Counter()
    for samples in world.fixed.values():
        v = Counter(w for *_x, w in samples if w is not None)
        if v:
            splits[f"{max(v[0], v[1])}-{min(v[0], v[1])}"] += 1
    got = d.splits.set_index("split")["items"].to_dict()
    assert got == dict(splits)
    by_margin = d.by_margin.set_index("margin")
    for margin, g in by_margin.iterrows():
        pairs = [(world.fixed_choice[i], c) for (_n, i), c in world.labels.items() if c in ("A", "B")
                 and abs(_votes(world.fixed[i], 0) - _votes(world.fixed[i], 1)) == margin]  # fmt: skip
        assert g["n"] == len(pairs)
        assert g["agreement"] == pytest.approx(sum(m == h for m, h in pairs) / len(pairs))


def _votes(samples: list[tuple[int, int, int, int | None]], idx: int) -> int:
    return sum(1 for *_x, w in samples if w == idx)


def test_accuracy_by_number_of_votes_uses_prefixes_of_the_stored_samples(world: World) -> None:
    d = world.insights.dashboard(Scope(runs=("fixed-2x2",)))
    curve = d.by_votes.set_index("votes")
    order = {0: (0, 1, 0), 1: (1, 0, 0), 2: (0, 1, 1), 3: (1, 0, 1)}  # sample 0 of each order, then sample 1
    for m in (1, 2, 3, 4):
        pairs = []
        for (_n, item), choice in world.labels.items():
            if choice not in ("A", "B"):
                continue
            by_key = {(a, b, s): w for a, b, s, w in world.fixed[item]}
            lead = sum({0: 1, 1: -1}.get(by_key[order[k]], 0) for k in range(m))
            pairs.append(("A" if lead > 0 else "B" if lead < 0 else "none", choice))
        assert curve.loc[m, "agreement"] == pytest.approx(sum(p == h for p, h in pairs) / len(pairs))
    totals = d.totals.set_index("run")
    tokens = sum(_judgment_tokens(world, item) for item in world.fixed)
    assert totals.loc["fixed-2x2", "judgments"] == 4 * N_ITEMS
    assert totals.loc["fixed-2x2", "reasoning_tokens"] == tokens


def _judgment_tokens(world: World, item: int) -> int:
    return int(world.repo.item_judgments(item).query("run == 'fixed-2x2'")["reasoning_tokens"].sum())


# --- explorer -------------------------------------------------------------------------------------


def test_explorer_filters_find_exactly_the_rows_behind_a_figure(world: World) -> None:
    rows, total = world.insights.explore(Drill(run="fixed-2x2", flags=("disagree_human",)))
    expected = {i for (_n, i), c in world.labels.items() if c in ("A", "B") and c != world.fixed_choice[i]}
    assert set(rows["item_id"]) == expected and total == len(expected)
    rows, _ = world.insights.explore(Drill(run="fixed-2x2", reference="humans", ref_choice="tie", model_choice="A"))
    assert set(rows["item_id"]) == {i for (_n, i), c in world.labels.items() if c == "tie"
                                    and world.fixed_choice[i] == "A"}  # fmt: skip
    rows, _ = world.insights.explore(Drill(run="fixed-2x2", flags=("inconsistent",)))
    assert set(rows["item_id"]) == {i for i, c in world.fixed_consistent.items() if c is False}
    rows, _ = world.insights.explore(Drill(text=SEARCH_WORD.upper()))
    assert set(rows["item_id"]) == {world.search_item}  # found in a reasoning trace, case-insensitively
    rows, _ = world.insights.explore(Drill(text="100%_"))  # LIKE wildcards are literal
    assert rows.empty


def test_every_chart_point_drills_down_to_matching_rows(world: World) -> None:
    for scope, group in ((Scope(), "run"), (Scope(dataset="llmbar-known"), "annotator"), (Scope(reference="gold"),
                         "subset"), (Scope(reference="ann2"), "run")):  # fmt: skip
        view = dashboard.view(_Ctx(world.insights), None, scope, group)
        assert set(view.figures) == set(dashboard.FIGURES) and set(view.tables) == set(dashboard.TABLES)
        for name, fig in view.figures.items():
            layout = fig.layout
            assert layout.title.text, name
            assert layout.xaxis.title.text and layout.yaxis.title.text, name
            for trace in fig.data:
                values = trace.customdata if trace.customdata is not None else []
                flat = [v for row in values for v in (row if isinstance(row, list | tuple) else [row])]
                z = getattr(trace, "z", None)
                counts = None if z is None else [v for row in z for v in row]
                for k, raw in enumerate(flat):
                    if counts is not None and counts[k] == 0:
                        continue  # an empty heatmap cell lists nothing
                    rows, _ = world.insights.explore(Drill.from_dict(json.loads(raw)))
                    assert not rows.empty, (name, raw)


def test_item_view_shows_traces_labels_and_notes(world: World) -> None:
    item_html, runs_html = explorer.open_item(_Ctx(world.insights), None, world.search_item)
    assert SEARCH_WORD not in item_html and SEARCH_WORD in runs_html  # the trace, escaped, in the runs column
    assert runs_html.count('data-judgment="') == 4 + 1  # fixed-2x2's four samples and one-vote's one
    first = explorer.open_item(_Ctx(world.insights), None, min(world.gold))[0]
    assert "changed my mind" in first and "ann1" in first


class _Ctx:
    """The part of AppContext the dashboards use."""

    def __init__(self, insights: Insights) -> None:
        self.insights = insights

    def user(self, request: object) -> None:
        return None


def test_after_a_write_only_new_rows_are_read_and_the_figures_equal_a_full_rebuild(
    shared_data: Path, tmp_path: Path
) -> None:
    w = build_world(f"sqlite:///{tmp_path / 'inc.db'}", shared_data, tmp_path)
    before = w.insights.dashboard(Scope())
    first = min(w.gold)
    flipped = "A" if w.labels[("ann2", first + 10)] == "B" else "B"
    w.repo.add_label(HumanLabel(annotator="ann2", item_db_id=first + 10, choice=Choice(flipped)))  # supersedes
    w.repo.add_label(HumanLabel(annotator="ann4", item_db_id=first, choice=Choice.TIE))  # a new annotator
    after = w.insights.dashboard(Scope())
    fresh = Insights(w.repo).dashboard(Scope())  # reads everything
    assert after.counts == fresh.counts and after.counts["labels"] == before.counts["labels"] + 1
    assert after.headline == fresh.headline and after.alpha == fresh.alpha
    assert after.confusion.equals(fresh.confusion)
    assert after.annotator_pairs.equals(fresh.annotator_pairs)
