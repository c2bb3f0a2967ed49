"""Exports of human-corrected labels for retraining, and full dumps for analysis.

The unit of an export is a pair of responses of an item. Its decision comes from, in order:
1. an adjudication: a reviewer's latest final label of the pair (:mod:`rrm_ui.services.review`);
2. humans: the latest label of each annotator on that pair (``--annotator`` keeps one) when they
   agree; if they disagree (and nobody adjudicated) the pair is skipped as ``humans_disagree``;
3. the fill (``--fill-from``): ``model``, the chosen run's aggregate for that pair (when no run is
   named, the data set's main run, :func:`main_run`: the judge run that covers the most items, the
   newest among equals; re-judge runs from the Explorer never are); ``gold``, the data set's gold
   tiers (lower is better; equal tiers are a tie); ``none``, nothing;
4. nothing: counted as ``no_decision``.
Ties and "both bad" are left out by default and counted. Every skipped pair is counted, so
``written + sum(skipped) == pairs considered``, and every written row says where its decision came
from (``source``: adjudicated, human, model, gold), counted in the summary.

Filters: ``only_corrected`` keeps pairs where a human's (or the reviewer's) decision differs from the
model's; ``only_disagreements`` keeps pairs with any disagreement: human vs model, between humans, the
model's verdict flipping with the presentation order, or split votes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd

from rrm_ui.domain import RunInfo, StoredItem
from rrm_ui.services.review import final_labels
from rrm_ui.storage import Repository
from rrm_ui.storage.models import REJUDGE, Item, Judgment

FORMATS = {
    "trl": "TRL preference JSONL: prompt, chosen, rejected (strings)",
    "trl-conversational": "TRL preference JSONL with message lists for prompt, chosen, rejected",
    "trl-parquet": "TRL preference Parquet (string form)",
    "rrm": "RRM pairwise JSONL: query, response1, response2, label (1 or 2), optional reasoning trace",
    "csv": "full dump of judgments with traces, verdicts, labels and compute figures (CSV)",
    "parquet": "the same full dump as Parquet",
}
#: pairs whose texts are read (and rows written) at a time; items whose judgments a dump reads at a time
PAIRS_PER_CHUNK = 2_000
ITEMS_PER_CHUNK = 200
#: what decides a pair that no reviewer adjudicated and no human labelled
FILL_FROM = {
    "model": "the model run's verdict",
    "gold": "the data set's gold (lower tier better; equal tiers a tie)",
    "none": "nothing: human and adjudicated labels only",
}


@dataclass
class ExportSummary:
    format: str
    path: str
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    run: str | None = None  # the run whose verdicts were used (a dump without --run: every run)
    run_note: str = ""  # why that run: named, or the main run
    sources: Counter = field(default_factory=Counter)  # rows written per source: adjudicated, human, model, gold

    @property
    def considered(self) -> int:
        return self.written + sum(self.skipped.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items()))
        text = f"wrote {self.written} rows to {self.path} ({self.format}); {self.run_note}; "
        if self.sources:
            order = ("adjudicated", "human", "model", "gold")
            text += "decisions from: " + ", ".join(f"{k} {self.sources[k]}" for k in order if self.sources[k]) + "; "
        return text + f"skipped: {parts or 'none'}"


@dataclass(frozen=True)
class ExportFilters:
    dataset: str
    run: str | None = None
    annotator: str | None = None
    only_corrected: bool = False
    only_disagreements: bool = False
    include_ties: bool = False  # TRL/RRM formats cannot express a tie; kept only in dumps
    with_reasoning: bool = False  # rrm format: add the model's trace where a human agreed with it
    fill_from: str = "model"  # what decides pairs without an adjudication or a human label: FILL_FROM


def export(repo: Repository, fmt: str, out: str | Path, filters: ExportFilters) -> ExportSummary:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ds = repo.dataset(filters.dataset)
    if ds is None:
        raise ValueError(f"no data set named {filters.dataset!r}")
    if filters.fill_from not in FILL_FROM:
        raise ValueError(f"unknown --fill-from {filters.fill_from!r}; choose one of {', '.join(FILL_FROM)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run = _pick_run(repo, ds.id, filters.run)
    run_id = run.id if run is not None else None
    if fmt in ("csv", "parquet"):
        summary = _dump(repo, ds.id, run_id, fmt, out, filters)
        if filters.run is None:
            summary.run_note = "judgments of every run"
        else:
            summary.run, summary.run_note = run.name, f"judgments of run {run.name!r}"
        return summary
    units = iter_pair_units(repo, ds.id, run_id, filters.annotator, filters.fill_from, texts=False)
    summary = ExportSummary(fmt, str(out))
    if run is None:
        summary.run_note = "no model run"
    else:
        why = "the run asked for" if filters.run is not None else "the main run: the most items judged"
        summary.run, summary.run_note = run.name, f"model verdicts from run {run.name!r} ({why})"
    summary.run_note += f"; pairs no human decided filled from {filters.fill_from}"
    with_traces = fmt == "rrm" and filters.with_reasoning
    # streamed: a chunk of pairs at a time gets its texts (and traces) read and its rows written
    with _rows_writer(fmt, out) as write:
        for chunk in _batched(units, PAIRS_PER_CHUNK):
            kept = []
            for u in chunk:
                if filters.only_corrected and not u["corrected"]:
                    summary.skipped["not_corrected"] += 1
                    continue
                if filters.only_disagreements and not u["disagreement"]:
                    summary.skipped["no_disagreement"] += 1
                    continue
                choice = u["choice"]
                if choice in (None, "humans_disagree"):
                    summary.skipped[choice or "no_decision"] += 1
                    continue
                if choice in ("tie", "both_bad"):
                    summary.skipped[choice] += 1
                    continue
                kept.append(u)
            if not kept:
                continue
            _add_texts(repo, kept)
            humans = [u for u in kept if u["source"] in ("human", "adjudicated")]
            traces = _agreeing_traces(repo, run_id, {u["item_id"] for u in humans}) if with_traces and humans else {}
            rows = []
            for u in kept:
                by_humans = u["source"] in ("human", "adjudicated")
                rows.append(_row(fmt, u, traces.get((u["item_id"], u["i"], u["j"])) if by_humans else None))
                summary.sources[u["source"]] += 1
            write(rows)
            summary.written += len(rows)
    return summary


def _pick_run(repo: Repository, dataset_id: int, name: str | None) -> RunInfo | None:
    if name is not None:
        runs = repo.runs(dataset_id)
        match = [r for r in runs if r.name == name]
        if not match:
            known = ", ".join(r.name for r in runs) or "none"
            raise ValueError(f"no run named {name!r} in this data set (runs: {known})")
        return match[0]
    return main_run(repo, dataset_id)


def main_run(repo: Repository, dataset_id: int) -> RunInfo | None:
    """The data set's main run: of its judge runs (not the Explorer's re-judge runs, not imported
    external judges), the one with results for the most items, the newest among equals.

    So one re-judged item (a one-item run, the newest) never takes the place of the run that
    judged the whole data set; a later run that judged as many items does.
    """
    covered = repo.items_judged_per_run(dataset_id)
    runs = [r for r in repo.runs(dataset_id) if r.kind == "judge" and r.origin != REJUDGE and covered.get(r.id)]
    return max(runs, key=lambda r: (covered[r.id], r.id), default=None)


def pair_units(
    repo: Repository, dataset_id: int, run_id: int | None, annotator: str | None, fill_from: str = "model"
) -> list[dict[str, Any]]:
    """One record per (item, i, j) pair with the final, human and model decisions and disagreement flags."""
    return list(iter_pair_units(repo, dataset_id, run_id, annotator, fill_from))


def iter_pair_units(
    repo: Repository,
    dataset_id: int,
    run_id: int | None,
    annotator: str | None,
    fill_from: str = "model",
    *,
    texts: bool = True,
) -> Iterator[dict[str, Any]]:
    """:func:`pair_units` as a stream, in (item, i, j) order. The decisions are made from the items'
    shapes and gold (no texts); with ``texts`` the query and both responses are read a chunk of pairs at
    a time, without them those fields are None (:func:`_add_texts` fills them in)."""
    items = repo.item_shapes(dataset_id)  # id -> (ext_id, number of responses, gold tiers)
    labels = repo.latest_labels(dataset_id)
    if annotator is not None:
        labels = labels[labels["annotator"] == annotator]
    human: dict[tuple[int, int, int], set[str]] = {}
    for item_id, i, j, choice in labels[["item_id", "pair_i", "pair_j", "choice"]].itertuples(index=False):
        key, choice = _canonical(int(item_id), int(i), int(j), choice)
        human.setdefault(key, set()).add(choice)
    model = model_choices(repo, dataset_id, run_id) if run_id is not None else {}
    final = final_labels(repo, dataset_id)
    keys = set(human) | set(model) | set(final) | {(i, 0, 1) for i, (_, n, _) in items.items() if n == 2}
    if fill_from == "gold":  # every pair gold orders, lists included
        keys |= {(i, a, b) for i, (_, n, gold) in items.items() if gold is not None
                 for a in range(n) for b in range(a + 1, n)}  # fmt: skip
    units = (_unit(key, items[key[0]], human, model, final, fill_from) for key in sorted(keys))
    if not texts:
        yield from units
        return
    for chunk in _batched(units, PAIRS_PER_CHUNK):
        yield from _add_texts(repo, chunk)


def _unit(
    key: tuple[int, int, int],
    shape: tuple[str, int, tuple[Any, ...] | None],
    human: dict[tuple[int, int, int], set[str]],
    model: dict[tuple[int, int, int], dict[str, Any]],
    final: dict[tuple[int, int, int], dict[str, Any]],
    fill_from: str,
) -> dict[str, Any]:
    """The record of one pair (the texts None)."""
    item_id, i, j = key
    ext_id, _, gold = shape
    h = human.get(key, set())
    md = model.get(key)
    m_choice = md["choice"] if md else None
    adjudicated = final.get(key)
    if adjudicated is not None:
        choice, source = adjudicated["choice"], "adjudicated"
    elif len(h) > 1:
        choice, source = "humans_disagree", "human"
    elif h:
        choice, source = next(iter(h)), "human"
    elif fill_from == "model":
        choice, source = m_choice, "model" if m_choice else None
    elif fill_from == "gold":
        choice = _gold_choice(gold, i, j)
        source = "gold" if choice else None
    else:
        choice, source = None, None
    decided = adjudicated["choice"] if adjudicated else next(iter(h)) if len(h) == 1 else None
    corrected = decided is not None and m_choice is not None and decided != m_choice
    disagreement = (
        corrected or len(h) > 1 or bool(md and md["position_consistent"] is False) or bool(md and md["split"])
    )
    return {
        "item_id": item_id, "ext_id": ext_id, "i": i, "j": j, "query": None, "first": None, "second": None,
        "choice": choice, "source": source, "model_choice": m_choice, "human_choices": sorted(h),
        "corrected": corrected, "disagreement": disagreement,
    }  # fmt: skip


def _add_texts(repo: Repository, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in the query and the two responses of each unit (one read for the chunk's items)."""
    items = {it.db_id: it.item for it in repo.items_by_id(sorted({u["item_id"] for u in units}))}
    for u in units:
        it = items[u["item_id"]]
        u["query"], u["first"], u["second"] = it.query, it.responses[u["i"]], it.responses[u["j"]]
    return units


def _batched(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while chunk := list(islice(it, n)):
        yield chunk


def gold_choice(item: StoredItem, i: int, j: int) -> str | None:
    """Gold's choice on the pair (i, j): A when response i has the lower (better) tier, B when j has,
    tie when they share one; None without gold."""
    return _gold_choice(item.gold_tiers, i, j)


def _gold_choice(tiers: tuple[Any, ...] | None, i: int, j: int) -> str | None:
    if tiers is None or max(i, j) >= len(tiers) or tiers[i] is None or tiers[j] is None:
        return None
    return "A" if tiers[i] < tiers[j] else "B" if tiers[i] > tiers[j] else "tie"


def model_choices(repo: Repository, dataset_id: int, run_id: int) -> dict[tuple[int, int, int], dict[str, Any]]:
    """The run's choice on every pair it decided: (item, i, j) with i < j -> choice, votes, flags."""
    results = repo.latest_results(dataset_id, run_id)
    out: dict[tuple[int, int, int], dict[str, Any]] = {}
    for r in results.to_dict("records"):
        out.update(model_pairs(r))
    return out


def _canonical(item_id: int, i: int, j: int, choice: str) -> tuple[tuple[int, int, int], str]:
    """Key pairs with i < j; a choice about (j, i) is mirrored."""
    if i < j:
        return (item_id, i, j), choice
    return (item_id, j, i), {"A": "B", "B": "A"}.get(choice, choice)


def model_pairs(result: dict[str, Any]) -> dict[tuple[int, int, int], dict[str, Any]]:
    """A run's aggregate on an item (a result row with ``item_id``) as its choice per pair."""
    item_id = int(result["item_id"])
    pairs = result["pairs"] or []
    out = {}
    if not pairs:  # an external judge: one verdict on the pair (0, 1)
        winner = result["winner"]
        choice = None if winner is None or pd.isna(winner) else ("A" if int(winner) == 0 else "B")
        if choice is None and result["decision"] == "tie":
            choice = "tie"
        out[(item_id, 0, 1)] = {"choice": choice, "position_consistent": None, "split": False, "votes": {}}
        return out
    for p in pairs:
        votes = {int(k): v for k, v in (p.get("votes") or {}).items()}
        i, j = sorted((p["i"], p["j"]))
        winner = p["winner"]
        if winner is None:
            choice = "tie" if sum(votes.values()) > 0 else None
        else:
            choice = "A" if winner == i else "B"
        split = sum(1 for v in votes.values() if v > 0) > 1
        out[(item_id, i, j)] = {"choice": choice, "position_consistent": p.get("position_consistent"), "split": split,
                                "votes": votes}  # fmt: skip
    return out


def _agreeing_traces(
    repo: Repository, run_id: int | None, item_ids: set[int]
) -> dict[tuple[int, int, int], list[dict[str, Any]]]:
    """For each pair of these items, the strict-ok judgments of the run (trace and the order shown), by id."""
    if run_id is None or not item_ids:
        return {}
    # the status is filtered here, not in SQL: with it SQLite reads through the status index (every ok
    # judgment of every run, for each chunk) instead of the (run, item) index
    frame = repo.frame("judgments", [Judgment.run_id == run_id, Judgment.item_id.in_(sorted(item_ids))])
    frame = frame[frame["status"] == "ok"].sort_values("id")
    out: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for r in frame.to_dict("records"):
        i, j = sorted((int(r["a"]), int(r["b"])))
        out.setdefault((int(r["item_id"]), i, j), []).append(r)
    return out


def _row(fmt: str, u: dict[str, Any], traces: list[dict[str, Any]] | None) -> dict[str, Any]:
    better, worse = (u["first"], u["second"]) if u["choice"] == "A" else (u["second"], u["first"])
    winner_index = u["i"] if u["choice"] == "A" else u["j"]
    meta = {"id": u["ext_id"], "pair": [u["i"], u["j"]], "source": u["source"]}
    if fmt in ("trl", "trl-parquet"):
        return {"prompt": u["query"], "chosen": better, "rejected": worse, **meta}
    if fmt == "trl-conversational":
        return {
            "prompt": [{"role": "user", "content": u["query"]}],
            "chosen": [{"role": "assistant", "content": better}],
            "rejected": [{"role": "assistant", "content": worse}],
            **meta,
        }
    row = {"query": u["query"], "response1": u["first"], "response2": u["second"],
           "label": 1 if u["choice"] == "A" else 2, **meta}  # fmt: skip
    agreeing = [t for t in traces or () if t["verdict"] in ("A", "B")
                and (t["a"] if t["verdict"] == "A" else t["b"]) == winner_index]  # fmt: skip
    if agreeing and u["model_choice"] == u["choice"]:
        t = agreeing[0]  # the trace speaks of the responses in the order it was shown: keep that order
        row.update({
            "response1": u["first"] if t["a"] == u["i"] else u["second"],
            "response2": u["second"] if t["a"] == u["i"] else u["first"],
            "label": 1 if t["verdict"] == "A" else 2,
            "reasoning": f"<think>{t['reasoning']}</think>{t['answer']}",
        })  # fmt: skip
    else:
        row["reasoning"] = None
    return row


TRL_PARQUET_COLUMNS = ("prompt", "chosen", "rejected", "id", "pair", "source")


@contextlib.contextmanager
def _rows_writer(fmt: str, out: Path) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """A function that appends rows to the export (JSONL lines, or a Parquet row group per call),
    written to ``out`` only once complete: a failed export leaves no partial file behind."""
    part = out.with_name(out.name + ".part")
    try:
        if fmt == "trl-parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([("prompt", pa.large_string()), ("chosen", pa.large_string()),
                                ("rejected", pa.large_string()), ("id", pa.large_string()),
                                ("pair", pa.list_(pa.int64())), ("source", pa.large_string())])  # fmt: skip
            with pq.ParquetWriter(part, schema) as writer:
                yield lambda rows: writer.write_table(
                    pa.Table.from_pylist([{k: r[k] for k in TRL_PARQUET_COLUMNS} for r in rows], schema=schema)
                )
        else:
            with part.open("w", encoding="utf-8") as f:
                yield lambda rows: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


def _dump(
    repo: Repository, dataset_id: int, run_id: int | None, fmt: str, out: Path, filters: ExportFilters
) -> ExportSummary:
    """One row per judgment of the data set's runs (or of one run), with item text, gold and labels.

    Streamed: per run (in id order), the judgments of a chunk of items at a time are read, joined and
    written (a Parquet row group, or CSV rows), in (run, item, a, b, sample) order."""
    keep: set[int] | None = None
    if filters.only_corrected or filters.only_disagreements:
        flag = "corrected" if filters.only_corrected else "disagreement"
        units = iter_pair_units(repo, dataset_id, run_id, filters.annotator, texts=False)
        keep = {u["item_id"] for u in units if u[flag]}
    runs = repo.runs(dataset_id)
    run_columns = pd.DataFrame([{"run_id": r.id, "run": r.name, "model": r.model, "backend": r.backend,
                                 "template": r.template, "template_version": r.template_version}
                                for r in runs])  # fmt: skip
    labels = repo.latest_labels(dataset_id)
    if filters.annotator is not None:
        labels = labels[labels["annotator"] == filters.annotator]
    human: dict[int, str] = {}
    if not labels.empty:
        human = (
            labels.assign(label=labels["annotator"] + "=" + labels["choice"])
            .groupby("item_id")["label"]
            .agg(lambda s: ";".join(sorted(s)))
            .to_dict()
        )
    final = final_labels(repo, dataset_id)  # "i-j=choice by reviewer" per adjudicated pair of the item
    per_item: dict[int, list[str]] = {}
    for (item_id, i, j), adj in sorted(final.items()):
        per_item.setdefault(item_id, []).append(f"{i}-{j}={adj['choice']} by {adj['reviewer']}")
    item_ids = [i for i in repo.item_ids(dataset_id) if keep is None or i in keep]
    run_ids = sorted(r.id for r in runs if filters.run is None or r.id == run_id)
    written = 0
    part = out.with_name(out.name + ".part")
    writer: Any = None
    schema: Any = None
    try:
        for rid in run_ids:
            for start in range(0, len(item_ids), ITEMS_PER_CHUNK):
                chunk = item_ids[start : start + ITEMS_PER_CHUNK]
                judgments = repo.frame("judgments", [Judgment.run_id == rid, Judgment.item_id.in_(chunk)])
                if judgments.empty:
                    continue
                items = repo.frame("items", [Item.id.in_(chunk)])
                items = items[["id", "ext_id", "query", "responses", "subset", "gold_tiers"]]
                frame = _dump_rows(judgments, items, run_columns, human, per_item)
                if fmt == "csv":
                    # every field quoted, CRLF between rows (RFC 4180): model text holds lone \r, which
                    # pandas' reader otherwise takes for a row break
                    frame.to_csv(part, index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n",
                                 mode="a" if written else "w", header=not written)  # fmt: skip
                else:
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    if writer is None:
                        schema = _dump_schema(pa.Table.from_pandas(frame, preserve_index=False).schema)
                        writer = pq.ParquetWriter(part, schema)
                    writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
                written += len(frame)
        if not written:  # the header (CSV) or the columns (Parquet) of an empty dump
            empty = _dump_rows(pd.DataFrame(columns=list(Judgment.__table__.columns.keys())),
                               pd.DataFrame(columns=["id", "ext_id", "query", "responses", "subset", "gold_tiers"]),
                               run_columns, human, per_item)  # fmt: skip
            if fmt == "csv":
                empty.to_csv(part, index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
            else:
                empty.to_parquet(part, index=False)
        if writer is not None:
            writer.close()
            writer = None
        os.replace(part, out)
    finally:
        if writer is not None:
            writer.close()
        part.unlink(missing_ok=True)
    return ExportSummary(fmt, str(out), written=written)


def _dump_rows(
    judgments: pd.DataFrame,
    items: pd.DataFrame,
    run_columns: pd.DataFrame,
    human: dict[int, str],
    per_item: dict[int, list[str]],
) -> pd.DataFrame:
    """The dump's rows of some judgments: the judgment's columns, the item's, the run's, the labels."""
    frame = judgments.merge(items.rename(columns={"id": "item_id"}), on="item_id")
    if not run_columns.empty:
        frame = frame.merge(run_columns, on="run_id", how="left")
    frame["human_labels"] = frame["item_id"].map(lambda k: human.get(k))
    frame["final_labels"] = frame["item_id"].map(lambda k: ";".join(per_item[k]) if k in per_item else None)
    frame["response_a"] = [r[a] for r, a in zip(frame["responses"], frame["a"], strict=True)]
    frame["response_b"] = [r[b] for r, b in zip(frame["responses"], frame["b"], strict=True)]
    frame["gold_tiers"] = frame["gold_tiers"].map(lambda g: None if g is None else json.dumps(g))
    frame = frame.drop(columns=["responses"]).sort_values(["run_id", "item_id", "a", "b", "sample", "id"])
    for column in Judgment.__table__.columns:  # an integer that may be empty: a float, in every chunk
        if column.nullable and column.type.python_type is int and column.name in frame:
            frame[column.name] = frame[column.name].astype("float64")
    return frame


def _dump_schema(inferred: Any) -> Any:
    """The dump's Parquet schema: the first chunk's, with a column that was all empty there typed by its
    table column (a float for an integer that may be empty, a string for text), so every chunk fits."""
    import pyarrow as pa

    by_name = {c.name: c for c in Judgment.__table__.columns}
    fields = []
    for f in inferred:
        kind = by_name[f.name].type.python_type if f.name in by_name else str
        if pa.types.is_null(f.type):
            typ = {int: pa.float64(), float: pa.float64(), bool: pa.bool_(), datetime: pa.timestamp("us")}.get(
                kind, pa.large_string()
            )
            f = pa.field(f.name, typ)
        fields.append(f)
    return pa.schema(fields)
