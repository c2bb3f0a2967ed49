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

from rrm_ui.analysis.explorer import Drill
from rrm_ui.domain import Account, Choice, Compute, HumanLabel, ItemResult, Judgment, PairOutcome, Role, Status, Verdict
from rrm_ui.io.importers import PRESETS
from rrm_ui.services.datasets import import_file
from rrm_ui.services.insights import Insights, Scope
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
    """The part of AppContext the dashboards and the explorer use: the insights, the repository, the
    queue's overlap, and the local single user (an admin, as the app without accounts)."""

    overlap = 1

    def __init__(self, insights: Insights) -> None:
        self.insights = insights
        self.repo = insights.repo

    def user(self, request: object) -> Account:
        return Account(0, "local", Role.ADMIN, False)


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


# --- list items: the pair's own comparison (issue 13, item 1) --------------------------------------


def test_list_items_take_the_choice_from_the_pairs_own_comparison(tmp_path: Path) -> None:
    """A round robin whose top two tied head to head, and a knockout whose labelled pair never met.

    The ranking orders 0 before 1 (round robin) and 1 before 2 (knockout), but the head-to-head of 0
    and 1 was a tie, and 1 and 2 never met: the first label is a disagreement (the model's ``none``)
    and the second is counted neither way; the tied list's own choice is ``none``.
    """
    from rrm_ui.domain import ImportedDataset, ImportedItem

    engine = make_engine(f"sqlite:///{tmp_path / 'lists.db'}")
    upgrade(engine)
    repo = Repository(engine)
    items = (ImportedItem("rr", "q", ("r0", "r1", "r2"), 1), ImportedItem("ko", "q", ("r0", "r1", "r2", "r3"), 2))
    info = repo.create_dataset(ImportedDataset("lists", "/lists.jsonl", "list", items))
    rr_id, ko_id = (s.db_id for s in repo.items(info.id))
    run, _ = repo.get_or_create_run(info.id, "lists-run", backend="x", model="y", strategy="auto")
    rng = random.Random(0)

    def match(i: int, j: int, votes: dict[int, int]) -> PairOutcome:
        js = [_judgment(i, j, s, w, rng) for s, w in enumerate([i] * votes.get(i, 0) + [j] * votes.get(j, 0))]
        winner = None if votes.get(i, 0) == votes.get(j, 0) else max(votes, key=votes.get)
        return PairOutcome(i, j, winner, votes, 0, None, len(js), None, tuple(js))

    rr = (match(0, 1, {0: 1, 1: 1}), match(0, 2, {0: 2}), match(1, 2, {1: 2}))  # 0 and 1 tie at the top
    repo.save_result(run.id, rr_id, ItemResult("rr", "round_robin", None, (0, 1, 2), rr, "rrm", "1", "m", "x"))
    ko = (match(0, 1, {0: 2}), match(2, 3, {3: 2}), match(0, 3, {3: 2}))  # 1 and 2 never met
    repo.save_result(run.id, ko_id, ItemResult("ko", "knockout", 3, (3, 0, 1, 2), ko, "rrm", "1", "m", "x"))
    labels = [(rr_id, 0, 1, "A"), (ko_id, 1, 2, "A"), (ko_id, 0, 1, "A")]
    for item_id, i, j, choice in labels:
        repo.add_label(HumanLabel(annotator="ann", item_db_id=item_id, choice=Choice(choice), pair_i=i, pair_j=j))
    # by hand: the stored outcome of each labelled pair, or none stored
    outcomes = {(rr_id, 0, 1): None, (ko_id, 0, 1): 0}  # the winner of the pair's own match
    scored = [("none" if outcomes[(it, i, j)] is None else "A" if outcomes[(it, i, j)] == i else "B", c)
              for it, i, j, c in labels if (it, i, j) in outcomes]  # fmt: skip
    d = Insights(repo).dashboard(Scope())
    a = d.headline["agreement"]
    assert (a.n, a.value) == (len(scored), pytest.approx(sum(m == h for m, h in scored) / len(scored)))
    assert (a.n, a.value) == (2, 0.5)
    assert d.counts["not_compared"] == 1 and d.counts["references"] == 3
    assert d.confusion.to_numpy().sum() == 2  # the label on a pair never compared is in no cell
    rows, _ = Insights(repo).explore(Drill())
    by_item = rows.set_index("item_id")
    assert by_item.loc[rr_id, "model_choice"] == "none"  # a tied list decided nothing
    assert by_item.loc[ko_id, "model_choice"] == "B"  # the final: 3 beat 0, pair (0, 3)
    assert by_item.loc[rr_id, "split"] == "1-1" and bool(by_item.loc[rr_id, "split_votes"])
    assert by_item.loc[ko_id, "split"] == "2-0" and not bool(by_item.loc[ko_id, "split_votes"])
    disagree, _ = Insights(repo).explore(Drill(flags=("disagree_human",)))
    assert set(disagree["item_id"]) == {rr_id}


# --- references people report (issue 12): the human majority, three-way, judge vs judge ------------


def majority_by_hand(labels: dict[tuple[str, int], str]) -> dict[int, str]:
    """The class with more labels than any other per item; 'no_majority' when two share the most."""
    per_item: dict[int, Counter] = defaultdict(Counter)
    for (_name, item), choice in labels.items():
        per_item[item][choice] += 1
    out = {}
    for item, c in per_item.items():
        (top, n), *rest = c.most_common()
        out[item] = "no_majority" if rest and rest[0][1] == n else top
    return out


def test_agreement_with_the_human_majority(world: World) -> None:
    maj = majority_by_hand(world.labels)
    d = world.insights.dashboard(Scope(runs=("fixed-2x2",), reference="majority"))
    pairs = [(world.fixed_choice[i], m) for i, m in sorted(maj.items()) if m in ("A", "B")]
    a, k = d.headline["agreement"], d.headline["kappa"]
    p, lo, hi = wilson(sum(x == y for x, y in pairs), len(pairs))
    assert (a.n, a.value, a.low, a.high) == (len(pairs), pytest.approx(p), pytest.approx(lo), pytest.approx(hi))
    assert k.value == pytest.approx(kappa(pairs)[0])
    assert d.counts["labelled_comparisons"] == len(maj)
    assert d.counts["no_majority"] == sum(m == "no_majority" for m in maj.values()) > 0
    cm = d.confusion
    assert cm.to_numpy().sum() == sum(m != "no_majority" for m in maj.values())
    rows, _ = world.insights.explore(Drill(run="fixed-2x2", flags=("disagree_majority",)))
    assert set(rows["item_id"]) == {i for i, m in maj.items() if m in ("A", "B") and m != world.fixed_choice[i]}
    rows, _ = world.insights.explore(Drill(flags=("no_majority",)))
    assert set(rows["item_id"]) == {i for i, m in maj.items() if m == "no_majority"}


def three_way_by_hand(samples: list[tuple[int, int, int, int | None]]) -> str:
    """A / B from the majority of valid votes, tie when they split evenly, none without a valid vote."""
    v = Counter(w for *_x, w in samples if w is not None)
    if not v:
        return "none"
    return "tie" if v[0] == v[1] else "A" if v[0] > v[1] else "B"


def test_three_way_agreement_scores_the_models_ties(world: World) -> None:
    d = world.insights.dashboard(Scope(runs=("fixed-2x2",)))
    model = {i: three_way_by_hand(s) for i, s in world.fixed.items()}
    assert "tie" in model.values()
    pairs = [(model[i], c) for (_n, i), c in sorted(world.labels.items()) if c in ("A", "B", "tie")]
    a, k = d.three_way["agreement"], d.three_way["kappa"]
    assert (a.n, a.value) == (len(pairs), pytest.approx(sum(x == y for x, y in pairs) / len(pairs)))
    kap, se = kappa(pairs)
    assert k.value == pytest.approx(kap)
    assert (k.low, k.high) == (pytest.approx(kap - 1.96 * se), pytest.approx(kap + 1.96 * se))
    table = d.by_reference.set_index(["reference", "run"])
    assert table.loc[("humans", "fixed-2x2"), "three_way"] == len(pairs)
    assert table.loc[("humans", "fixed-2x2"), "agreement3"] == pytest.approx(a.value)


def test_judge_vs_judge_agreement_kappa_and_the_disagreeing_items(world: World) -> None:
    d = world.insights.dashboard(Scope())
    pairs = [(world.fixed_choice[i], world.one_vote_choice[i]) for i in sorted(world.fixed_choice)]
    row = d.judges.set_index(["run_1", "run_2"]).loc[("fixed-2x2", "one-vote")]
    agree = sum(x == y for x, y in pairs)
    p, lo, hi = wilson(agree, len(pairs))
    assert (row["n"], row["agree"]) == (N_ITEMS, agree)
    assert (row["agreement"], row["agreement_low"], row["agreement_high"]) == (pytest.approx(p), pytest.approx(lo),
                                                                               pytest.approx(hi))  # fmt: skip
    assert row["kappa"] == pytest.approx(kappa(pairs)[0])
    decided = [(x, y) for x, y in pairs if "none" not in (x, y)]
    assert (row["both_decided"], row["agree_decided"]) == (len(decided), sum(x == y for x, y in decided))
    rows, _ = world.insights.explore(Drill(run="fixed-2x2", versus="one-vote"))
    assert set(rows["item_id"]) == {i for i in world.fixed_choice if world.fixed_choice[i] != world.one_vote_choice[i]}
    assert set(rows["run"]) == {"fixed-2x2"}


def test_runs_side_by_side_counts_every_judgment_of_each_run(world: World) -> None:
    """The runs table's judgments, truncated share and completion tokens per item, against the stored rows
    read here with SQL (every try of every sample; items: the run's results)."""
    from sqlalchemy import text

    with world.repo.engine.connect() as c:
        js = c.execute(text("SELECT r.name, j.status, j.completion_tokens FROM judgments j JOIN runs r "
                            "ON r.id = j.run_id")).all()  # fmt: skip
        items = dict(c.execute(text("SELECT r.name, count(DISTINCT x.item_id) FROM item_results x JOIN runs r "
                                    "ON r.id = x.run_id GROUP BY r.name")).all())  # fmt: skip
    table = world.insights.dashboard(Scope()).runs.set_index("run")
    for run, n_items in items.items():
        mine = [(s, t) for name, s, t in js if name == run]
        assert table.loc[run, "judgments"] == len(mine)
        if mine:
            share = sum(s == "truncated" for s, _ in mine) / len(mine)
            assert table.loc[run, "truncated"] == pytest.approx(round(share, 3))
        assert table.loc[run, "tokens per item"] == pytest.approx(round(sum(t or 0 for _, t in mine) / n_items, 1))
