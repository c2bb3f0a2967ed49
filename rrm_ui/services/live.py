"""Judging one typed-in item live (the Judge tab): streamed text per comparison, Stop, storage.

A :class:`LiveJudgment` runs :func:`~rrm_ui.engine.runner.judge_item` on the runtime's model
loop and collects every streamed piece of text under a lock. The web handler reads
:meth:`LiveJudgment.snapshot` a few times a second (batched updates: the browser never
receives one message per token). When the judgment ends it is stored at once: the item in
the data set ``judge-tab``, its judgments and aggregate in a run named after the settings, so
the user's own label can be attached to it and everything shows up in dashboards and exports.
An Explorer re-judge of a stored item goes to a re-judge run of its own (:func:`rejudge_run`).

:meth:`LiveJudgment.stop` cancels the task on the loop, which closes the backend streams and
aborts generation on the backend. A judgment stopped while it streams decided nothing and is not
stored; a Stop that arrives once it has ended (while it is being stored) changes nothing: it is
reported done and stored, with a note saying so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
import time
import uuid
from dataclasses import dataclass, field

import pandas as pd

from rrm_ui.domain import Choice, Compute, HumanLabel, Item, ItemResult, JudgeSpec, Judgment, RunInfo, Sampling
from rrm_ui.engine.judge import Judge, Observer, StreamUpdate
from rrm_ui.engine.runner import judge_item, resolve_strategy
from rrm_ui.services.annotation import item_ref
from rrm_ui.services.judging import default_run_name, ensure_run, judge_spec
from rrm_ui.services.runtime import Runtime
from rrm_ui.storage import Repository
from rrm_ui.storage import models as m
from rrm_ui.storage.models import REJUDGE

LIVE_DATASET = "judge-tab"
MAX_RESPONSES = 8


class LiveState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class _Stream:
    a: int
    b: int
    sample: int
    started: float
    reasoning: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    pieces: int = 0
    judgment: Judgment | None = None
    ended: float | None = None
    attempt: int = 0

    def restart(self, attempt: int) -> None:
        """A try again of this sample after a transient failure: its text starts over."""
        self.attempt = attempt
        self.started = time.monotonic()
        self.reasoning, self.answer, self.pieces, self.judgment, self.ended = [], [], 0, None, None


@dataclass(frozen=True)
class StreamSnapshot:
    """The text of one sample of one ordered pair so far."""

    a: int
    b: int
    sample: int
    reasoning: str
    answer: str
    pieces: int  # streamed pieces so far (about one token each); exact counts come with the judgment
    elapsed_s: float
    judgment: Judgment | None  # set once the sample has ended
    attempt: int = 0  # > 0: tried again after a transient failure (the text is the new try's)


@dataclass(frozen=True)
class LiveSnapshot:
    id: str
    state: LiveState
    streams: tuple[StreamSnapshot, ...]
    elapsed_s: float
    result: ItemResult | None
    error: str | None
    item_db_id: int | None
    run_id: int | None
    note: str | None = None  # e.g. a Stop that came once the judgment had ended: it is stored all the same
    dataset: str | None = None  # the data set it is stored in (with ``id``: the item as every tab names it)


def validate_item(query: str, responses: list[str]) -> Item:
    """The typed-in query and responses as an item; a clear ValueError when something is missing."""
    if not query.strip():
        raise ValueError("type a query first")
    filled = [r for r in responses if r.strip()]
    if len(filled) < 2:
        raise ValueError(f"give at least two responses (found {len(filled)} filled in)")
    if len(filled) > MAX_RESPONSES:
        raise ValueError(f"at most {MAX_RESPONSES} responses per item")
    return Item(f"live-{uuid.uuid4().hex[:12]}", query, tuple(filled))


class LiveJudgment:
    """One item being judged for one user; safe to read from any thread."""

    def __init__(
        self,
        runtime: Runtime,
        item: Item,
        *,
        compute: Compute,
        sampling: Sampling,
        strategy: str = "auto",
        annotator: str | None = None,
        stored_item: tuple[str, int] | None = None,
        parent_run: str | None = None,
        judge: str | None = None,
    ) -> None:
        """``stored_item`` (data set name, item id): re-judge an item already in the database; the
        result goes to that data set, into a re-judge run of its own (never into a batch run, whose
        decision it would replace), tied to ``parent_run``, the name of the run it re-examines."""
        self.id = item.id
        self.item = item
        self.strategy = resolve_strategy(strategy, len(item.responses))
        self.annotator = annotator
        self._stored_item = stored_item
        self._parent_run = parent_run
        self._runtime = runtime
        self._lock = threading.Lock()
        self._streams: dict[tuple[int, int, int], _Stream] = {}
        self._state = LiveState.RUNNING
        self._result: ItemResult | None = None
        self._error: str | None = None
        self._stored: tuple[int, int] | None = None
        self._note: str | None = None
        self._began = False  # the task has started on the loop (from then on, it reports how it ended)
        self._done = threading.Event()
        self._started = time.monotonic()
        self._ended: float | None = None
        chosen = {"judge": judge} if judge else {}  # a judge format's name; default the app's
        self._judge = runtime.judge(compute, sampling, Observer(self._on_delta, self._on_judgment), **chosen)
        self._future: concurrent.futures.Future[None] = runtime.submit(self._run())

    @property
    def spec(self) -> JudgeSpec:
        """The spec this judgment judges with (the run it is stored in has this spec)."""
        return judge_spec(self._judge, self.strategy)

    # --- on the model loop -------------------------------------------------------------------

    def _stream(self, a: int, b: int, sample: int) -> _Stream:
        key = (a, b, sample)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(a, b, sample, time.monotonic())
        return st

    def _on_delta(self, update: StreamUpdate) -> None:
        with self._lock:
            st = self._stream(update.a, update.b, update.sample)
            if update.attempt < st.attempt:
                return  # a late piece of a try already replaced
            if update.attempt > st.attempt:
                st.restart(update.attempt)
            if update.delta.reasoning:
                st.reasoning.append(update.delta.reasoning)
            if update.delta.answer:
                st.answer.append(update.delta.answer)
            st.pieces += 1

    def _on_judgment(self, _item_id: str, judgment: Judgment) -> None:
        with self._lock:
            st = self._stream(judgment.a, judgment.b, judgment.sample)
            if judgment.attempt < st.attempt:
                return
            if judgment.attempt > st.attempt:
                st.restart(judgment.attempt)
            st.judgment = judgment
            st.ended = time.monotonic()

    async def _run(self) -> None:
        with self._lock:
            if self._state != LiveState.RUNNING:
                return  # stopped before it began
            self._began = True
        try:
            result = await judge_item(self._judge, self.item, self.strategy)
        except asyncio.CancelledError:
            self._finish(LiveState.STOPPED, None, None, None)
            raise
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app goes on
            self._finish(LiveState.FAILED, None, _describe(exc), None)
            return
        # The judgment has ended: a Stop now cannot undo it. The store runs in a thread, which a
        # cancel cannot interrupt, so wait for it and say what happened (stored, or why not).
        store = asyncio.ensure_future(asyncio.to_thread(self._store, result))
        note = None
        try:
            try:
                stored = await asyncio.shield(store)
            except asyncio.CancelledError:
                note = "Stop came after the judgment had ended; it was stored all the same"
                stored = await store
        except Exception as exc:  # noqa: BLE001
            self._finish(LiveState.FAILED, None, f"the judgment ended but was not stored: {_describe(exc)}", None)
            return
        self._finish(LiveState.DONE, result, None, stored, note)

    def _store(self, result: ItemResult) -> tuple[int, int]:
        repo = self._runtime.repo
        if self._stored_item is None:
            dataset_id, item_db_id = repo.add_item(LIVE_DATASET, self.item, meta={"by": self.annotator})
            run, _ = ensure_run(repo, dataset_id, default_run_name(LIVE_DATASET, self._judge, self.strategy),
                                self._judge, self.strategy)  # fmt: skip
        else:
            dataset, item_db_id = self._stored_item
            info = repo.dataset(dataset)
            if info is None:
                raise ValueError(f"the data set {dataset!r} is gone")
            run = rejudge_run(repo, info.id, dataset, self._judge, self.strategy, self._parent_run)
        repo.save_result(run.id, item_db_id, result)
        return item_db_id, run.id

    def _finish(
        self,
        state: LiveState,
        result: ItemResult | None,
        error: str | None,
        stored: tuple[int, int] | None,
        note: str | None = None,
    ) -> None:
        with self._lock:
            self._state, self._result, self._error, self._stored, self._note = state, result, error, stored, note
            self._ended = time.monotonic()
        self._done.set()

    # --- from any thread ---------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the judgment: the backend streams close and generation is aborted.

        The state stays what the task on the loop reports when it unwinds (stopped; or done and
        stored, when the judgment had ended before the Stop arrived); only a task that never
        started is marked stopped here.
        """
        self._future.cancel()
        with self._lock:
            if self._began or self._state != LiveState.RUNNING:
                return
            self._state = LiveState.STOPPED
            self._ended = time.monotonic()
        self._done.set()

    def wait(self, timeout: float | None = None) -> LiveSnapshot:
        """The snapshot once the judgment has ended and says how (or at ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.05):
            with self._lock:
                never_ran = not self._began
            if (never_ran and self._future.done()) or (deadline is not None and time.monotonic() > deadline):
                break  # cancelled before it began (the loop closed), or out of time
        return self.snapshot()

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._state != LiveState.RUNNING

    def snapshot(self) -> LiveSnapshot:
        now = time.monotonic()
        with self._lock:
            streams = tuple(
                StreamSnapshot(
                    st.a,
                    st.b,
                    st.sample,
                    "".join(st.reasoning),
                    "".join(st.answer),
                    st.pieces,
                    (st.ended or self._ended or now) - st.started,
                    st.judgment,
                    st.attempt,
                )
                for st in sorted(self._streams.values(), key=lambda s: (min(s.a, s.b), max(s.a, s.b), s.a, s.sample))
            )
            stored = self._stored
            return LiveSnapshot(
                self.id,
                self._state,
                streams,
                (self._ended or now) - self._started,
                self._result,
                self._error,
                stored[0] if stored else None,
                stored[1] if stored else None,
                self._note,
                (self._stored_item[0] if self._stored_item else LIVE_DATASET) if stored else None,
            )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def rejudge_run(
    repo: Repository, dataset_id: int, dataset: str, judge: Judge, strategy: str, parent: str | None
) -> RunInfo:
    """The re-judge run of ``parent`` (a run name of the data set, or None) with these settings.

    Its name adds ``:rejudge-of-<parent id>`` to the name a batch run with these settings would
    have, and the run is marked (``origin`` "rejudge", ``parent_run_id``), so a batch job or
    ``rrm-ui judge`` never continues it and it never becomes the data set's main run. Re-judges of
    several items of one run with the same settings gather in one re-judge run.
    """
    parent_id = None
    if parent is not None:
        found = next((r for r in repo.runs(dataset_id) if r.name == parent), None)
        if found is None:
            raise ValueError(f"the run {parent!r} of {dataset!r} is gone")
        parent_id = found.id
    base = default_run_name(dataset, judge, strategy)
    name = f"{base}:rejudge-of-{parent_id}" if parent_id is not None else f"{base}:rejudge"
    run, _ = ensure_run(repo, dataset_id, name, judge_spec(judge, strategy), origin=REJUDGE, parent_run_id=parent_id)
    return run


def labelled_pair(result: ItemResult) -> tuple[int, int]:
    """The pair a human label of a judged item is about: the two responses for a pair, else the top two;
    without a ranking, a knockout's final (the match the verdict would have come from), else the first two."""
    if len(result.ranking) >= 2:
        return result.ranking[0], result.ranking[1]
    final = result.bracket[-1] if result.bracket else ()
    if len(final) == 1 and isinstance(final[0].get("i"), int) and isinstance(final[0].get("j"), int):
        return final[0]["i"], final[0]["j"]
    return 0, 1


def model_choice(result: ItemResult, pair: tuple[int, int]) -> Choice | None:
    """The model's verdict on ``pair`` as a Choice (A: ``pair[0]`` better), or None when it has none: the
    item's winner against any other response, else the pair's own comparison (a list's other matches);
    None for a pair the model did not compare, or compared to a tie."""
    winner = result.winner if result.winner in pair else pair_outcome_winner(result, pair)
    if winner is None:
        return None
    return Choice.A if winner == pair[0] else Choice.B


def pair_outcome_winner(result: ItemResult, pair: tuple[int, int]) -> int | None:
    """The winner of the pair's own comparison in the judgment (None: not compared, or a tie)."""
    for p in result.pairs:
        if {p.i, p.j} == set(pair):
            return p.winner if p.winner in pair else None
    return None


def label_live(
    runtime: Runtime,
    snap: LiveSnapshot,
    choice: Choice,
    note: str | None,
    annotator: str,
    pair: tuple[int, int] | None = None,
) -> int:
    """Store the user's own view of a finished, stored live judgment: on ``pair`` (any two of its
    responses; ``choice`` A means ``pair[0]`` is better), by default the pair its verdict is about."""
    if snap.result is None or snap.item_db_id is None:
        raise ValueError("only a finished judgment can be labelled (a stopped or failed one decided nothing)")
    n = len({x for p in snap.result.pairs for x in (p.i, p.j)} | set(snap.result.ranking))
    if pair is None:
        pair = labelled_pair(snap.result)
    elif len(set(pair)) != 2 or not all(0 <= k < n for k in pair):
        raise ValueError(f"a pair is two different responses of the {n} judged, found {pair}")
    mine = model_choice(snap.result, pair)
    agrees = None if mine is None or choice not in (Choice.A, Choice.B) else choice == mine
    return runtime.repo.add_label(
        HumanLabel(
            annotator=annotator,
            item_db_id=snap.item_db_id,
            choice=choice,
            pair_i=pair[0],
            pair_j=pair[1],
            run_id=snap.run_id,
            agrees_with_model=agrees,
            note=(note or "").strip() or None,
        )
    )


__all__ = [
    "LIVE_DATASET",
    "MAX_RESPONSES",
    "REJUDGE",
    "LiveJudgment",
    "LiveSnapshot",
    "LiveState",
    "StreamSnapshot",
    "label_live",
    "recent",
    "rejudge_run",
    "labelled_pair",
    "model_choice",
    "pair_outcome_winner",
    "validate_item",
]


def recent(repo: Repository, annotator: str, *, everyone: bool = False, limit: int = 20) -> pd.DataFrame:
    """The latest Judge-tab items with the model's decision and the annotator's own label.

    An annotator sees the items they judged; ``everyone`` (admins) sees all, with every label. The
    ``item`` column names each item as every tab does (``judge-tab / live-...``, annotation.item_ref).
    """
    columns = ["item", "query", "winner", "decision", "label", "annotator", "note"]
    ds = repo.dataset(LIVE_DATASET)
    if ds is None:
        return pd.DataFrame(columns=columns)
    items = repo.frame("items", [m.Item.dataset_id == ds.id])
    if not everyone:
        items = items[items["meta"].map(lambda meta: (meta or {}).get("by") == annotator)]
    items = items.sort_values("id", ascending=False).head(limit)
    results = repo.latest_results(ds.id)
    labels = repo.latest_labels(ds.id)
    if not everyone:
        labels = labels[labels["annotator"] == annotator]
    out = items[["id", "query"]].rename(columns={"id": "item"})
    refs = dict(zip(items["id"], items["ext_id"].map(lambda e: item_ref(LIVE_DATASET, e)), strict=True))
    out["query"] = out["query"].map(lambda q: q if len(q) <= 120 else q[:117] + "…")
    res = results.sort_values("id").drop_duplicates("item_id", keep="last")[["item_id", "winner", "decision"]]
    out = out.merge(res, left_on="item", right_on="item_id", how="left").drop(columns="item_id")
    out["winner"] = out["winner"].map(lambda w: "" if pd.isna(w) else f"Response {int(w) + 1}")
    lab = labels.sort_values("id").drop_duplicates(["item_id", "annotator"], keep="last")
    lab = lab[["item_id", "choice", "annotator", "note"]].rename(columns={"choice": "label"})
    out = out.merge(lab, left_on="item", right_on="item_id", how="left").drop(columns="item_id")
    out["item"] = out["item"].map(refs)
    return out[columns].fillna("")
