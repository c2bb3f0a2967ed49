"""The dashboards' incremental read after a write equals a full read, on SQLite and PostgreSQL.

PostgreSQL hands out ids from sequences when a row is inserted, not when it commits: a transaction
that took a lower id can commit after one that took a higher id. The incremental read must still
find that row (and a later label with a lower id must not replace the newer one). On PostgreSQL the
test makes two real transactions commit out of id order; on SQLite, whose writers are serialized,
the same late row is made with an explicit lower id.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, insert, select

from rrm_ui.analysis.frames import Frames, build, update
from rrm_ui.domain import Choice, HumanLabel
from rrm_ui.services.insights import Insights, Scope
from rrm_ui.storage import models as m
from rrm_ui.storage.repo_analytics import AnalyticsFrames
from tests.test_dashboards import _judgment as _dash_judgment
from tests.test_dashboards import _outcome, _result, build_world

TABLES = ("items", "runs", "results", "judgments", "labels")


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("id").reset_index(drop=True)


def assert_same_raw(inc: AnalyticsFrames, full: AnalyticsFrames) -> None:
    for name in TABLES:
        a, b = _sorted(getattr(inc, name)), _sorted(getattr(full, name))
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=name)
        assert np.array_equal(inc.seen[name], full.seen[name]), name
    assert inc.version == full.version


def assert_same_dashboard(ins: Insights, repo: Any) -> None:
    after, fresh = ins.dashboard(Scope()), Insights(repo).dashboard(Scope())
    assert after.counts == fresh.counts
    assert after.headline == fresh.headline and after.three_way == fresh.three_way and after.alpha == fresh.alpha
    assert after.confusion.equals(fresh.confusion)
    assert after.annotator_pairs.equals(fresh.annotator_pairs)
    pd.testing.assert_frame_equal(after.totals, fresh.totals)


def _label(item_id: int, annotator_id: int, choice: str, **extra: Any) -> dict[str, Any]:
    return {"annotator_id": annotator_id, "item_id": item_id, "pair_i": 0, "pair_j": 1, "choice": choice,
            "blind": False, "source": "app", **extra}  # fmt: skip


def _judgment(run_id: int, item_id: int, sample: int, **extra: Any) -> dict[str, Any]:
    return {"run_id": run_id, "item_id": item_id, "a": 0, "b": 1, "sample": sample, "attempt": 0, "verdict": "A",
            "status": "ok", "reasoning": "late", "answer": r"\boxed{Assistant 1}", "prompt_tokens": 100,
            "completion_tokens": 4000, "reasoning_tokens": 3990, "ttft_s": 0.1, "latency_s": 9.0, **extra}  # fmt: skip


def _insert(conn: Connection, table: Any, values: dict[str, Any]) -> int:
    return int(conn.execute(insert(table).values(values).returning(table.id)).scalar_one())


def test_rows_committed_out_of_id_order_are_read_and_equal_a_full_read(
    db_url: str, shared_data: Path, tmp_path: Path
) -> None:
    w = build_world(db_url, shared_data, tmp_path)
    repo, engine = w.repo, w.repo.engine
    ins = Insights(repo)
    before = ins.dashboard(Scope())
    with engine.connect() as c:
        ann = c.execute(select(m.Annotator.id).order_by(m.Annotator.id)).scalars().first()
        run = c.execute(select(m.Run.id).where(m.Run.kind == "judge").order_by(m.Run.id)).scalars().first()
        item = min(w.gold)
        top = {t: c.scalar(select(func.max(t.id))) for t in (m.Label, m.Judgment)}
    # The same annotator relabels one pair twice: "tie" first (the lower id), then "both_bad". The
    # lower id commits last; the latest label stays "both_bad", as the full read says.
    if engine.dialect.name == "postgresql":
        slow, fast = engine.connect(), engine.connect()
        slow_tx = slow.begin()
        low_label = _insert(slow, m.Label, _label(item, ann, "tie"))
        low_judgment = _insert(slow, m.Judgment, _judgment(run, item, 90))
        with fast.begin():
            high_label = _insert(fast, m.Label, _label(item, ann, "both_bad"))
            high_judgment = _insert(fast, m.Judgment, _judgment(run, item, 91))
        fast.close()
    else:  # SQLite: one writer at a time, so the late row gets its lower id by hand
        low_label, low_judgment = top[m.Label] + 5, top[m.Judgment] + 5
        with engine.begin() as c:
            high_label = _insert(c, m.Label, _label(item, ann, "both_bad", id=top[m.Label] + 10))
            high_judgment = _insert(c, m.Judgment, _judgment(run, item, 91, id=top[m.Judgment] + 10))
    assert low_label < high_label and low_judgment < high_judgment

    ins.frames()  # sees the higher ids only
    assert high_judgment in set(ins._raw.judgments["id"]) and low_judgment not in set(ins._raw.judgments["id"])
    assert_same_raw(ins._raw, repo.analytics_frames())
    version = repo.data_version()

    if engine.dialect.name == "postgresql":
        slow_tx.commit()
        slow.close()
    else:
        with engine.begin() as c:
            _insert(c, m.Label, _label(item, ann, "tie", id=low_label))
            _insert(c, m.Judgment, _judgment(run, item, 90, id=low_judgment))
    late = repo.data_version()
    assert late != version  # the late rows change the version although no highest id did
    assert late[0::2] == version[0::2]

    inc = repo.analytics_frames(since=ins._raw)
    assert low_judgment in set(inc.judgments["id"]) and low_label in set(inc.seen["labels"])
    assert_same_raw(inc, repo.analytics_frames())
    latest = inc.labels[(inc.labels["item_id"] == item) & (inc.labels["id"].isin([low_label, high_label]))]
    assert latest["choice"].tolist() == ["both_bad"]  # the higher id, although it committed first
    assert_same_dashboard(ins, repo)
    assert ins.dashboard(Scope()).counts["judgments"] == before.counts["judgments"] + 2


def test_a_row_gone_since_the_last_read_means_a_full_read(db_url: str, shared_data: Path, tmp_path: Path) -> None:
    """Rows are append-only; should one be deleted all the same, the refresh reads everything again."""
    w = build_world(db_url, shared_data, tmp_path)
    ins = Insights(w.repo)
    ins.dashboard(Scope())
    with w.repo.engine.begin() as c:
        gone = c.scalar(select(func.min(m.Judgment.id)))
        c.execute(m.Judgment.__table__.delete().where(m.Judgment.id == gone))
        run = c.execute(select(m.Run.id).where(m.Run.kind == "judge")).scalars().first()
        _insert(c, m.Judgment, _judgment(run, min(w.gold), 92))
    assert_same_raw(w.repo.analytics_frames(since=ins._raw), w.repo.analytics_frames())
    assert gone not in set(ins.frames().judgments["judgment_id"])
    assert_same_dashboard(ins, w.repo)


def test_rows_read_in_chunks_equal_one_read_with_the_dtypes_of_the_whole_column(
    db_url: str, shared_data: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """The read fetches a few rows at a time; a NULL in one chunk only still makes its integer column
    float64 and its boolean column object, as one read of every row does, and each short string is one
    object per distinct value. The values are checked against the rows SQLAlchemy itself returns."""
    from rrm_ui.storage import repo_analytics

    w = build_world(db_url, shared_data, tmp_path)
    with w.repo.engine.begin() as c:  # a failed try with no tokens, in the last rows only
        run = c.execute(select(m.Run.id).where(m.Run.kind == "judge")).scalars().first()
        _insert(c, m.Judgment, _judgment(run, min(w.gold), 93, status="error", verdict=None, prompt_tokens=None,
                                         completion_tokens=None, reasoning_tokens=None, ttft_s=None))  # fmt: skip
    whole = w.repo.analytics_frames()
    monkeypatch.setattr(repo_analytics, "READ_CHUNK", 7)
    chunked = w.repo.analytics_frames()
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(chunked, name), getattr(whole, name), check_dtype=True, obj=name)
    j = chunked.judgments
    assert len(j) > 7 * 3 and j["reasoning_tokens"].dtype == np.float64 and j["sample"].dtype == np.int64
    with w.repo.engine.connect() as c:
        rows = c.execute(select(m.Judgment.id, m.Judgment.status, m.Judgment.reasoning_tokens)
                         .order_by(m.Judgment.id)).all()  # fmt: skip
    assert j["id"].tolist() == [r.id for r in rows] and j["status"].tolist() == [r.status for r in rows]
    assert [None if np.isnan(v) else int(v) for v in j["reasoning_tokens"]] == [r.reasoning_tokens for r in rows]
    statuses = {}
    for v in j["status"]:
        assert statuses.setdefault(v, v) is v  # one object per distinct value, across chunks


def _frames_equal(a: Frames, b: Frames) -> None:
    keys = {"results": ["run_id", "item_id"], "judgments": ["judgment_id"], "labels": ["label_id"],
            "runs": ["run_id"], "items": ["item_id"],
            "refs": ["reference", "rater", "run_id", "item_id", "i", "j"]}  # fmt: skip
    for name, key in keys.items():
        x = getattr(a, name).sort_values(key).reset_index(drop=True)
        y = getattr(b, name).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(x, y[x.columns], check_dtype=False, obj=name)


def test_derived_frames_updated_piece_by_piece_equal_a_full_build(
    db_url: str, shared_data: Path, tmp_path: Path
) -> None:
    w = build_world(db_url, shared_data, tmp_path)
    repo = w.repo
    raw = repo.analytics_frames()
    old = build(raw)
    assert update(old, repo.analytics_frames(since=raw)) is old  # nothing new: nothing rebuilt
    first = min(w.gold)
    repo.add_label(HumanLabel(annotator="ann4", item_db_id=first, choice=Choice.TIE))  # a label only
    raw2 = repo.analytics_frames(since=raw)
    assert raw2.changed == {"labels"}
    new = update(old, raw2)
    assert new.judgments is old.judgments and new.results is old.results and new.labels is not old.labels
    _frames_equal(new, build(repo.analytics_frames()))
    with repo.engine.begin() as c:  # a judgment (a retry of a stored sample: its first try no longer votes)
        run = c.execute(select(m.Run.id).where(m.Run.kind == "judge").order_by(m.Run.id)).scalars().first()
        _insert(c, m.Judgment, _judgment(run, first, 0, attempt=1))
    raw3 = repo.analytics_frames(since=raw2)
    assert raw3.changed == {"judgments"}
    newer = update(new, raw3)
    assert newer.labels is new.labels and newer.judgments["retried"].sum() == new.judgments["retried"].sum() + 1
    _frames_equal(newer, build(repo.analytics_frames()))
    # the item judged again in that run (a re-judge: the newer result replaces the older, with its
    # judgments), the same annotator relabelling a pair, another annotator's first label on another item
    rng = random.Random(3)
    samples = [(0, 1, 0, 1), (1, 0, 0, 1)]
    outcome = _outcome(samples, [_dash_judgment(a, b, k, w, rng) for a, b, k, w in samples])
    repo.save_result(run, first, _result(repo.item(first).item.id, outcome))
    repo.add_label(HumanLabel(annotator="ann4", item_db_id=first, choice=Choice.B))
    repo.add_label(HumanLabel(annotator="ann5", item_db_id=max(w.gold), choice=Choice.A))
    raw4 = repo.analytics_frames(since=raw3)
    assert raw4.changed >= {"results", "judgments", "labels"}
    newest = update(newer, raw4)
    full = build(repo.analytics_frames())
    _frames_equal(newest, full)
    assert len(newest.results) == len(full.results) and len(newest.refs) == len(full.refs)


def test_dashboard_tables_are_computed_when_read_and_reused_when_their_frames_did_not_change(
    db_url: str, shared_data: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """A folded section's tables cost nothing until it is opened; after a label the judgments' tables
    are the previous version's (the same objects), after a judgment they are computed again; every
    table still equals a fresh Insights' (a full read and build)."""
    from rrm_ui.analysis import compute as comp
    from rrm_ui.ui.tabs import dashboard

    calls: list[str] = []
    real = comp.distribution
    monkeypatch.setattr(comp, "distribution", lambda j, col, by: calls.append(col) or real(j, col, by))
    w = build_world(db_url, shared_data, tmp_path)
    repo = w.repo

    class Ctx:  # what dashboard.view needs of the app's context
        insights = Insights(repo)
        views: dict[Any, Any] = {}

        def user(self, request: Any) -> None:
            return None

    ctx = Ctx()
    page = dashboard.view(ctx, None, Scope(), "run", dashboard.OPEN)
    assert set(page.figures) == {n for s in dashboard.OPEN for n in dashboard.SECTIONS[s][0]}
    assert calls == []  # the compute section is folded: its distributions were not computed
    first = ctx.insights.dashboard(Scope())
    tokens, runs = first.tokens_by_subset, first.runs
    assert len(calls) == 1
    compute = dashboard.view(ctx, None, Scope(), "run", ("compute",))
    assert set(compute.tables) == set(dashboard.SECTIONS["compute"][1]) and len(calls) == 5

    first_item = min(w.gold)
    repo.add_label(HumanLabel(annotator="ann4", item_db_id=first_item, choice=Choice.TIE))
    after_label = ctx.insights.dashboard(Scope())
    assert after_label is not first
    assert after_label.tokens_by_subset is tokens and after_label.runs is not runs  # runs reads the references
    dashboard.view(ctx, None, Scope(), "run", ("compute",))
    assert len(calls) == 5  # nothing of the compute section was computed again
    assert_same_dashboard(ctx.insights, repo)

    with repo.engine.begin() as c:
        run = c.execute(select(m.Run.id).where(m.Run.kind == "judge").order_by(m.Run.id)).scalars().first()
        _insert(c, m.Judgment, _judgment(run, first_item, 0, attempt=1))
    after_judgment = ctx.insights.dashboard(Scope())
    assert after_judgment.tokens_by_subset is not tokens and len(calls) == 6
    fresh = Insights(repo).dashboard(Scope())
    for name in ("tokens_by_subset", "runs", "by_reference", "judges", "flips", "splits", "by_votes"):
        pd.testing.assert_frame_equal(getattr(after_judgment, name), getattr(fresh, name), obj=name)
    assert_same_dashboard(ctx.insights, repo)


def test_adjudicated_labels_are_a_reference_read_incrementally(db_url: str, shared_data: Path, tmp_path: Path) -> None:
    """A reviewer's latest decision per comparison is the ``adjudicated`` reference: the headline against
    it equals agreement and kappa computed here from the world's known model choices; a decision stored
    on the pair as (1, 0) is mirrored; a later decision replaces an earlier one; the incremental read
    equals a full one."""
    from rrm_ui.domain import Adjudication
    from tests.test_dashboards import kappa, wilson

    w = build_world(db_url, shared_data, tmp_path)
    repo = w.repo
    ins = Insights(repo)
    ins.dashboard(Scope(reference="adjudicated"))  # read once before the decisions: they come incrementally
    items = sorted(w.gold)[:12]
    final: dict[int, str] = {}
    for k, item in enumerate(items):
        first = "B" if w.gold[item] == "A" else "A"  # replaced below by the gold choice
        repo.add_adjudication(Adjudication(item, 0, 1, Choice(first), "first look", "rev"))
        if k % 3 == 0:  # stored the other way round: (1, 0) and the mirrored choice
            choice = "tie" if k == 0 else w.gold[item]
            mirrored = {"A": "B", "B": "A"}.get(choice, choice)
            repo.add_adjudication(Adjudication(item, 1, 0, Choice(mirrored), "second look", "rev"))
            final[item] = choice
        else:
            final[item] = first
    d = ins.dashboard(Scope(reference="adjudicated"))
    pairs = [(w.fixed_choice[i], c) for i, c in final.items() if c in ("A", "B")]
    pairs += [(w.one_vote_choice[i], c) for i, c in final.items() if c in ("A", "B")]
    agree = sum(m == c for m, c in pairs)
    assert d.headline["agreement"].value == wilson(agree, len(pairs))[0]
    assert d.headline["agreement"].n == len(pairs) == 2 * (len(items) - 1)  # the tie is not decisive
    assert abs(d.headline["kappa"].value - kappa(pairs)[0]) < 1e-12
    row = d.by_reference.query("reference == 'adjudicated' and run == '(all)'").iloc[0]
    assert row["decisive"] == len(pairs) and row["agree"] == agree
    assert "adjudicated" in ins.choices()["references"]
    full = Insights(repo).dashboard(Scope(reference="adjudicated"))
    assert d.headline == full.headline and d.counts == full.counts


def test_agreement_by_guideline_version(db_url: str, shared_data: Path, tmp_path: Path) -> None:
    """Labels made under guideline versions 1 and 2 (and without one): agreement per version equals the
    count made here, and a bar's filter lists exactly the items labelled under that version."""
    from rrm_ui.analysis.explorer import Drill

    w = build_world(db_url, shared_data, tmp_path)
    repo = w.repo
    items = sorted(w.gold)[:10]
    version = {}
    for k, item in enumerate(items):
        v = 1 + k % 2
        version[item] = v
        repo.add_label(HumanLabel(annotator="ann-g", item_db_id=item, choice=Choice(w.gold[item]),
                                  guideline_version=v))  # fmt: skip
    ins = Insights(repo)
    d = ins.dashboard(Scope(reference="ann-g"), "guideline")
    table = d.by_group["guideline"].set_index("group")
    for v in (1, 2):
        pairs = [(w.fixed_choice[i], w.gold[i]) for i in items if version[i] == v]
        pairs += [(w.one_vote_choice[i], w.gold[i]) for i in items if version[i] == v]
        assert table.loc[f"v{v}", "decisive"] == len(pairs)
        assert table.loc[f"v{v}", "agree"] == sum(m == g for m, g in pairs)
        rows, _ = ins.explore(Drill(guideline=f"v{v}", annotator="ann-g"))
        assert set(rows["item_id"]) == {i for i in items if version[i] == v}
    humans = ins.dashboard(Scope(), "guideline").by_group["guideline"]
    assert "(none)" in set(humans["group"])  # the world's other labels carry no version


def test_forced_closes_are_counted_apart_from_truncations(db_url: str, shared_data: Path, tmp_path: Path) -> None:
    """Judgments whose thinking budget forcing closed (issue 16) are counted per run in the compute totals,
    apart from truncations, and the explorer's ``forced`` filter lists exactly their items."""
    from dataclasses import replace as with_

    from rrm_ui.analysis.explorer import Drill

    w = build_world(db_url, shared_data, tmp_path)
    repo = w.repo
    ins = Insights(repo)
    before = ins.dashboard(Scope()).totals.set_index("run")
    assert (before["forced"] == 0).all()
    with repo.engine.connect() as c:
        run = c.execute(select(m.Run.id).where(m.Run.name == "one-vote")).scalar_one()
    rng = random.Random(7)
    forced_items = sorted(w.gold)[:3]
    for item in forced_items:  # judged again in the one-vote run, its sample closed by forcing
        samples = [(0, 1, 0, 0)]
        js = [with_(_dash_judgment(0, 1, 0, 0, rng), forced_close=True, forced_at=4000)]
        repo.save_result(run, item, _result(repo.item(item).item.id, _outcome(samples, js)))
    after = ins.dashboard(Scope()).totals.set_index("run")
    assert after.loc["one-vote", "forced"] == 3 and after.loc["fixed-2x2", "forced"] == 0
    assert after.loc["one-vote", "truncated"] == before.loc["one-vote", "truncated"]  # forced: not truncated
    rows, _ = ins.explore(Drill(flags=("forced",)))
    assert set(rows["item_id"]) == set(forced_items) and set(rows["run"]) == {"one-vote"}
    fresh = Insights(repo).dashboard(Scope()).totals
    pd.testing.assert_frame_equal(ins.dashboard(Scope()).totals, fresh)
