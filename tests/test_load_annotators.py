"""Thirty annotators label at once through the app's API for a minute (bench/annotators.py drives them).

The real app (``python app.py``, its own SQLite file, 30 accounts, a data set of 10,000 pairs, a
model that cannot load: labelling needs none, the default overlap of 1) is driven over HTTP by 30
threads, each logged in with its own session. Every label the client was told was saved must be in
the ``labels`` table exactly once, under its annotator, with the choice that was sent; no call may
fail; with overlap 1 no item may carry labels of two annotators. Response times are reported (in
test-artifacts/annotator_load.txt and on stdout), never asserted: speed is measured by the
benchmark (docs/benchmarks.md), not by a test that could flake.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.annotators import DATASET, check, prepare_database, run_load, user_names
from tests.test_e2e_browser import ARTIFACTS, CPUS, PIN_APP, App

pytestmark = pytest.mark.slow
ANNOTATORS, SECONDS, ITEMS = 30, 60, 10_000


@pytest.fixture(scope="module")
def load_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, list[tuple[str, str]]]]:
    tmp = tmp_path_factory.mktemp("load-annotators")
    users = user_names(ANNOTATORS)
    prepare_database(f"sqlite:///{tmp / 'app.db'}", ITEMS, users)  # App uses tmp/app.db
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a, users
    a.stop()


def test_thirty_annotators_at_once_every_label_stored_exactly_once(load_app: tuple[App, list[tuple[str, str]]]) -> None:
    app, users = load_app
    before = os.sched_getaffinity(0)
    if PIN_APP:  # the app runs on CPUS[0]: the annotator threads (started in run_load) get the others
        os.sched_setaffinity(0, set(CPUS[1:]))
    try:
        report = run_load(app.url, users, DATASET, SECONDS)
    finally:
        os.sched_setaffinity(0, before)
    result = check(report, Path(app.db))

    text = (
        f"{ANNOTATORS} annotators, {SECONDS} s, {ITEMS} pairs, overlap 1 (tests/test_load_annotators.py)\n\n"
        f"{report.summary()}\n\n{result}\n"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "annotator_load.txt").write_text(text)
    print(text)

    assert report.errors == [], "\n".join(report.errors[:20])
    assert all("start" in a.times for a in report.annotators), "an annotator never got to start a queue"
    assert report.submitted, "no label was stored"
    assert result.duplicates == 0, f"labels stored more than once: {result}"
    assert result.missing == 0, f"labels the app said it saved are not in the database: {result}"
    assert result.extra == 0, f"labels in the database that no annotator was told were saved: {result}"
    assert result.stored == len(report.submitted)
    assert result.wrong_choice == 0, f"labels stored with another choice than the one sent: {result}"
    assert result.items_over_overlap == 0, f"overlap 1, yet items labelled by two annotators: {result}"
