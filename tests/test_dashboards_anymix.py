"""Dashboards and explorer on every mix of what a data set can hold (issue 12, item 7).

Each world is a real SQLite database filled through the Repository API: data sets with only
external runs, only labels, only gold, runs with no judgments, a single annotator, one item,
nothing at all, list items, and mixes of them. On each, every dashboard scope (all data sets,
each data set, each run, every reference, every grouping) and every explorer filter, flag, sort
and chart drill is opened: nothing raises, and every chart without data says so (a figure with a
message annotation instead of empty axes).
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import random
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import pytest

from rrm_ui.analysis.explorer import FLAGS, SORTS, Drill
from rrm_ui.domain import (
    Choice,
    Compute,
    HumanLabel,
    ImportedDataset,
    ImportedItem,
    ImportedLabel,
    ImportedVerdict,
    ItemResult,
    PairOutcome,
)
from rrm_ui.services.insights import Insights, Scope
from rrm_ui.storage import Repository, make_engine, upgrade
from rrm_ui.ui.tabs import dashboard, explorer
from tests.test_dashboards import _Ctx, _judgment, _outcome, _result


@dataclass(frozen=True)
class Mix:
    """What one world holds (every data set of it the same way)."""

    name: str
    datasets: int = 1
    items: int = 4
    gold: bool = False
    annotators: int = 0
    external: bool = False
    judged: bool = False  # a judge run with judgments
    empty_run: bool = False  # a judge run with no result at all
    lists: bool = False  # list items (three responses) judged by a knockout


MIXES = [
    Mix("nothing", datasets=0),
    Mix("items only"),
    Mix("only gold", gold=True),
    Mix("only labels", annotators=3),
    Mix("single annotator", annotators=1),
    Mix("only external", external=True),
    Mix("labels and an external judge, no RRM run", annotators=3, external=True),
    Mix("run with no judgments", empty_run=True, annotators=2, gold=True),
    Mix("judge run only", judged=True),
    Mix("one item, everything", items=1, gold=True, annotators=3, external=True, judged=True, empty_run=True),
    Mix("lists", lists=True, annotators=2, gold=True),
    Mix("two data sets, all of it", datasets=2, gold=True, annotators=3, external=True, judged=True, empty_run=True,
        lists=True),  # fmt: skip
]


@dataclass
class World:
    mix: Mix
    repo: Repository
    insights: Insights
    datasets: list[str] = field(default_factory=list)


def build(mix: Mix, tmp: Path) -> World:
    engine = make_engine(f"sqlite:///{tmp / 'mix.db'}")
    upgrade(engine)
    repo = Repository(engine)
    world = World(mix, repo, Insights(repo))
    rng = random.Random(len(mix.name))
    names = [f"ann{k + 1}" for k in range(mix.annotators)]
    for d in range(mix.datasets):
        name = f"set{d}"
        items = [ImportedItem(f"p{k}", f"query {k} of {name}", (f"first {k}", f"second {k}"), k + 1,
                              subset="odd" if k % 2 else None, gold_tiers=((0, 1) if k % 2 else (1, 0)) if mix.gold
                              else None) for k in range(mix.items)]  # fmt: skip
        if mix.lists:
            items.append(ImportedItem("l0", f"a list of {name}", ("r0", "r1", "r2"), mix.items + 1,
                                      gold_tiers=(1, 0, 2) if mix.gold else None))  # fmt: skip
        pairs = [it for it in items if len(it.responses) == 2]
        labels = tuple(ImportedLabel(it.ext_id, a, rng.choice(list(Choice))) for it in pairs for a in names)
        verdicts = tuple(ImportedVerdict(it.ext_id, rng.choice([Choice.A, Choice.B, Choice.TIE])) for it in pairs)
        info = repo.create_dataset(ImportedDataset(name, f"/data/{name}.jsonl", "pairwise", tuple(items), labels,
                                                   external_run="other-judge" if mix.external else None,
                                                   external=verdicts if mix.external else ()))  # fmt: skip
        world.datasets.append(name)
        stored = repo.items(info.id)
        settings = {"backend": "test", "model": "m", "template": "rrm", "template_version": "1", "sampling": {}}
        if mix.empty_run:
            repo.get_or_create_run(info.id, "never-ran", strategy="pair", compute=vars(Compute(votes=1)), **settings)
        if mix.judged or mix.lists:
            run, _ = repo.get_or_create_run(info.id, "rrm", strategy="auto", compute=vars(Compute(votes=2, swap=True)),
                                            **settings)  # fmt: skip
            for it in stored:
                if len(it.item.responses) == 2 and mix.judged:
                    samples = [(a, b, s, rng.choice([0, 1, None])) for a, b in ((0, 1), (1, 0)) for s in range(2)]
                    js = [_judgment(a, b, s, w, rng) for a, b, s, w in samples]
                    repo.save_result(run.id, it.db_id, _result(it.item.id, _outcome(samples, js)))
                elif len(it.item.responses) == 3:
                    first = _judgment(0, 1, 0, 1, rng)
                    final = _judgment(1, 2, 0, 1, rng)
                    semi = PairOutcome(0, 1, 1, {1: 1}, 0, None, 1, None, (first,))
                    fin = PairOutcome(1, 2, 1, {1: 1}, 0, None, 1, None, (final,))
                    repo.save_result(run.id, it.db_id, ItemResult(it.item.id, "knockout", 1, (1, 2, 0), (semi, fin),
                                                                  "rrm", "1", "m", "test"))  # fmt: skip
        lists = [it for it in stored if len(it.item.responses) == 3]
        for it in lists:
            for a in names:  # one label on the pair that met, one on a pair that never met
                repo.add_label(HumanLabel(annotator=a, item_db_id=it.db_id, choice=Choice.B, pair_i=1, pair_j=2))
                repo.add_label(HumanLabel(annotator=a, item_db_id=it.db_id, choice=Choice.A, pair_i=0, pair_j=2))
    return world


@pytest.fixture(scope="module", params=MIXES, ids=[m.name for m in MIXES])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    return build(request.param, tmp_path_factory.mktemp("mix"))


def _flat(values: object) -> list[object]:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        return [values]
    return [v for row in values for v in _flat(row)]  # type: ignore[attr-defined]


def _has_data(fig: go.Figure) -> bool:
    """Whether any trace draws a finite number (a bar, a point, a heatmap cell)."""
    for trace in fig.data:
        for attr in ("y", "z"):
            values = getattr(trace, attr, None)
            if values is not None and any(isinstance(v, numbers.Real) and not isinstance(v, bool) and
                                          math.isfinite(v) for v in _flat(values)):  # fmt: skip
                return True
    return False


def _message(fig: go.Figure) -> str:
    return " ".join(a.text for a in fig.layout.annotations if a.text)


def _scopes(world: World) -> list[tuple[Scope, str]]:
    """Every reference, data set and run as a scope, each grouping at least once, and one narrow mix."""
    choices = world.insights.choices()
    groups = itertools.cycle(dashboard.GROUP_BY)
    scopes = [(Scope(reference=ref), next(groups)) for ref in choices["references"]]
    scopes += [(Scope(), group) for group in dashboard.GROUP_BY if len(choices["references"]) < len(dashboard.GROUP_BY)]
    scopes += [(Scope(dataset=ds), "data set") for ds in choices["datasets"]]
    scopes += [(Scope(runs=(run,)), "run") for run in choices["runs"]]
    scopes += [(Scope(dataset=ds, runs=(run,), reference=ref), "annotator") for ds in choices["datasets"][:1]
               for run in choices["runs"][-1:] for ref in choices["references"][-1:]]  # fmt: skip
    return scopes


def test_every_scope_renders_and_every_empty_chart_says_so(world: World) -> None:
    ctx = _Ctx(world.insights)
    drills: set[str] = set()
    for scope, group in _scopes(world):
        world.insights.dashboard(scope, "run")  # the service itself, as a script calls it
        view = dashboard.view(ctx, None, scope, group)
        assert set(view.figures) == set(dashboard.FIGURES) and set(view.tables) == set(dashboard.TABLES)
        assert view.headline
        for name, fig in view.figures.items():
            assert fig.layout.title.text, name
            if not _has_data(fig):
                assert _message(fig), f"{world.mix.name}: chart {name!r} of {scope} has no data and no message"
            for trace in fig.data:
                values = trace.customdata if trace.customdata is not None else []
                drills.update(str(v) for v in _flat(values))
    if world.mix.datasets == 0:
        assert not drills
    for raw in sorted(drills):
        rows, total = world.insights.explore(Drill.from_dict(json.loads(raw)))
        assert total >= len(rows)


def test_every_explorer_filter_and_flag(world: World) -> None:
    ctx = _Ctx(world.insights)
    choices = world.insights.choices()
    drills = [Drill(), Drill(text="query"), Drill(text="100%_")]
    drills += [Drill(flags=(flag,)) for flag in FLAGS]
    drills += [Drill(sort=sort) for sort in SORTS]
    drills += [Drill(dataset=ds) for ds in choices["datasets"]]
    drills += [Drill(run=run, flags=tuple(FLAGS)[:2]) for run in choices["runs"]]
    drills += [Drill(subset=s) for s in choices["subsets"]]
    drills += [Drill(annotator=a, flags=("disagree_human",)) for a in choices["annotators"]]
    drills += [Drill(reference=ref, ref_choice=c, model_choice=m) for ref in choices["references"]
               for c in ("A", "tie") for m in ("A", "none")]  # fmt: skip
    drills += [Drill(bucket="0-256"), Drill(status="truncated"), Drill(backend="test"), Drill(margin=0),
               Drill(split="1-1")]  # fmt: skip
    every = world.insights.explore(Drill())[1]
    n_items = world.mix.datasets * (world.mix.items + int(world.mix.lists))
    assert every >= n_items
    for drill in drills:
        view = explorer.explore(ctx, None, drill)
        assert view.summary
        extra, values = explorer.drill_values(json.dumps(drill.to_dict()))
        assert explorer.drill_from_form(extra, *values) == drill
    rows, _ = world.insights.explore(Drill())
    for item_id in sorted(set(rows["item_id"])):
        item_html, runs_html = explorer.open_item(ctx, None, int(item_id))
        assert item_html and runs_html
