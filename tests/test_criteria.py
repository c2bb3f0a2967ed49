"""Per-criterion labels (issue 17): a data set names a few criteria, each labelled A / B / tie apart
from the overall choice; agreement per criterion. Storage on SQLite and PostgreSQL; the Annotate and
Review tabs' handlers and the command line on SQLite."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from rrm_ui.analysis.criteria import criterion_agreement
from rrm_ui.config import Settings
from rrm_ui.domain import Choice, HumanLabel, Role
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import accounts, open_repository, review
from rrm_ui.services.datasets import import_file
from tests.conftest import llmbar_subset
from tests.test_cli import rrm_ui

CRITERIA = ["helpfulness", "harmlessness"]


@pytest.fixture
def repo(db_url: str):  # noqa: ANN201
    return open_repository(Settings(database_url=db_url))


def test_criteria_labels_history_and_agreement(repo, shared_data: Path, tmp_path: Path) -> None:  # noqa: ANN001
    info = import_file(repo, llmbar_subset(shared_data, tmp_path, 3), name="ll", mapping=PRESETS["llmbar"])
    items = [it.db_id for it in repo.items(info.id)]
    assert review.set_criteria(repo, "ll", [" helpfulness ", "harmlessness", ""], None) == tuple(CRITERIA)
    assert repo.dataset_criteria(info.id) == tuple(CRITERIA)
    picks = {  # (annotator, item) -> helpfulness, harmlessness
        ("ann", 0): ("A", "A"), ("bob", 0): ("A", "B"), ("cy", 0): ("B", "B"),
        ("ann", 1): ("tie", "A"), ("bob", 1): ("tie", "A"),
        ("ann", 2): ("B", None),
    }  # fmt: skip
    for (who, k), (helpful, harmless) in picks.items():
        review.label_criteria(repo, who, items[k], (0, 1), {"helpfulness": helpful, "harmlessness": harmless})
    review.label_criteria(repo, "cy", items[0], (1, 0), {"harmlessness": "B"})  # about (1, 0): A for (0, 1)
    picks[("cy", 0)] = ("B", "A")
    latest = repo.latest_criterion_labels(info.id)
    # the latest per (annotator, item, pair as stored, criterion): cy's (1, 0) label is a key of its own,
    # and the agreement takes each annotator's newest on the pair either way round
    assert len(latest) == 12 and len(repo.frame("criterion_labels")) == 12
    # by hand: every two annotators on a shared comparison, per criterion
    expected = {}
    for c, name in enumerate(CRITERIA):
        n = pairs = agree = 0
        for k in range(3):
            got = [v[c] for (who, kk), v in sorted(picks.items()) if kk == k and v[c] is not None]
            if len(got) < 2:
                continue
            n += 1
            for a, b in combinations(got, 2):
                pairs += 1
                agree += a == b
        expected[name] = (n, pairs, agree)
    table = review.criterion_agreement(repo, info.id).set_index("criterion")
    assert {
        c: tuple(int(x) for x in table.loc[c, ["comparisons", "rater_pairs", "agree"]]) for c in CRITERIA
    } == expected
    assert expected == {"helpfulness": (2, 4, 2), "harmlessness": (2, 4, 2)}  # the figures, as a reader checks them
    with pytest.raises(ValueError, match="not one of this data set's"):
        review.label_criteria(repo, "ann", items[0], (0, 1), {"honesty": "A"})
    with pytest.raises(ValueError, match="A, B or tie"):
        review.label_criteria(repo, "ann", items[0], (0, 1), {"helpfulness": "both_bad"})
    with pytest.raises(ValueError, match="twice"):
        review.set_criteria(repo, "ll", ["a", "a"], None)
    with pytest.raises(ValueError, match="at most"):
        review.set_criteria(repo, "ll", [f"c{k}" for k in range(review.MAX_CRITERIA + 1)], None)
    accounts.add_user(repo, "rev", "correct horse battery", Role.REVIEWER)
    with pytest.raises(PermissionError, match="only admins"):
        review.set_criteria(repo, "ll", ["x"], "rev")
    # the overall labels are untouched by criterion labels
    assert repo.latest_labels(info.id).empty


def test_agreement_without_labels_lists_the_criteria() -> None:
    import pandas as pd

    empty = pd.DataFrame(columns=["annotator", "item_id", "pair_i", "pair_j", "criterion", "choice"])
    table = criterion_agreement(empty, ("helpfulness",))
    assert table.to_dict("records") == [{"criterion": "helpfulness", "comparisons": 0, "rater_pairs": 0, "agree": 0,
                                         "agreement": None}]  # fmt: skip


def test_criteria_in_the_annotate_and_review_tabs_and_the_cli(shared_data: Path, tmp_path: Path) -> None:
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui.context import AppContext
    from rrm_ui.ui.tabs import annotate
    from rrm_ui.ui.tabs import review as tab
    from tests.test_ui_pages import Req, seen, shown

    db = f"sqlite:///{tmp_path / 'ui.db'}"
    assert rrm_ui("import", str(llmbar_subset(shared_data, tmp_path, 2)), "--db", db, "--preset", "llmbar",
                  "--name", "ll").returncode == 0  # fmt: skip
    proc = rrm_ui("datasets", "criteria", "ll", *CRITERIA, "--db", db)
    assert proc.returncode == 0 and "helpfulness, harmlessness" in proc.stdout, proc.stderr
    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"), database_url=db,
                        hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    try:
        ctx = AppContext(rt, jobs, login=False)
        assert annotate.criteria_of(ctx, "ll") == tuple(CRITERIA)
        view = annotate.next_item(ctx, Req(), annotate.Session(), "ll", annotate.NO_RUN, "Unlabelled items", "", False)
        said = annotate.save_criteria(ctx, Req(), view.session, ["A", "tie", None, None, None, None])
        assert "helpfulness: A, harmlessness: tie" in shown(said)
        assert "Choose A, B or tie" in annotate.save_criteria(ctx, Req(), view.session, [None] * 6)
        task = view.session.task
        ctx.repo.add_label(HumanLabel("local", task.item.db_id, Choice.A, note="n1"))
        ctx.repo.add_label(HumanLabel("other", task.item.db_id, Choice.B))
        review.label_criteria(ctx.repo, "other", task.item.db_id, (0, 1), {"helpfulness": "A"})
        q = tab.load_queue(ctx, Req(), "ll", None, ["humans"])
        assert "helpfulness 1/1 (100%)" in shown(q.message) and "harmlessness 0/0" in shown(q.message)
        page = seen(tab.show_pair(ctx, Req(), "ll", None, q.choices[0][1]))
        assert "Criteria" in page and "localhelpfulnessA" in page and "localharmlessnesstie" in page
    finally:
        jobs.shutdown()
        rt.close()
    proc = rrm_ui("datasets", "criteria", "ll", "--db", db)
    assert proc.returncode == 0 and "none" in proc.stdout
