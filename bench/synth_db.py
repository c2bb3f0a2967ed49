"""A large, realistic database for benchmarking the dashboards (synthetic, deterministic for a seed).

    .venv/bin/python bench/synth_db.py [--url URL] [--judgments 100000] [--labels 20000] [--seed 0]

Three data sets shaped like LLMBar Natural, LLMBar Adversarial and RM-Bench (pairs, and in
RM-Bench about 5% lists of four responses judged by a knockout); per data set an external judge
(imported verdicts, no judgments) and three judge runs: four votes in both orders (8 judgments per
pair), adaptive compute (2 to 8 per pair, 2 on most) and one vote in one order. The number of items
is chosen so that the judgment rows add up to about ``--judgments``. Then 30 annotators label the
pairs (1 to 3 per item, a few relabel), about ``--labels`` rows in all (at most 3 per pair, plus relabels).
The runs' strategy is ``pair`` on LLMBar and ``auto`` on RM-Bench (``pair`` or ``knockout`` per item).

The judgments are simulated the way the engine produces them (sample numbering, the adaptive
stopping rule, the knockout bracket, the aggregate of :meth:`Repository.save_result`), so every
item result agrees with its judgments; only the texts are cheap filler. Rows are written with
SQLAlchemy Core bulk inserts, a few transactions in all. The database must be fresh.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, func, insert, select, text

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rrm_ui.domain import Compute, ItemResult, PairOutcome, Sampling  # noqa: E402
from rrm_ui.engine.judge import majority  # noqa: E402
from rrm_ui.engine.tournament import knockout  # noqa: E402
from rrm_ui.services.judging import run_name as judging_run_name  # noqa: E402
from rrm_ui.storage import make_engine, upgrade  # noqa: E402
from rrm_ui.storage import models as m  # noqa: E402
from rrm_ui.storage.repository import _external_result, result_row  # noqa: E402

CHUNK = 5_000  # rows per insert statement
TEMPLATE, TEMPLATE_VERSION = "rrm", "1"
MAX_TOKENS = 8192
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # the first import; everything else follows it

# judgment statuses and how often they occur
STATUSES = ("ok", "truncated", "no_verdict", "invalid", "error")
STATUS_CUMULATIVE = (0.88, 0.94, 0.98, 0.99, 1.0)
OK, TRUNCATED, NO_VERDICT, INVALID, ERROR = range(5)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: str
    subsets: tuple[tuple[str, float], ...]  # name, share of the data set's items
    share: float  # share of all items
    list_share: float  # items with four responses (the rest are pairs)
    accuracy: float  # mean chance that one judgment of the 32B model prefers the gold response


@dataclass(frozen=True)
class RunSpec:
    key: str
    backend: str
    model: str
    compute: Compute
    seed: int | None  # the sampling seed
    skill: float  # added to each item's accuracy
    bias: float  # scales each item's position bias
    tokens_per_s: tuple[float, float]  # decoding speed of one stream
    endpoints: tuple[str, ...] = ()


DATASETS = (
    DatasetSpec("llmbar-natural", "pairwise", (("Natural", 1.0),), 0.15, 0.0, 0.87),
    DatasetSpec(
        "llmbar-adversarial",
        "pairwise",
        (("Neighbor", 0.42), ("GPTInst", 0.29), ("GPTOut", 0.15), ("Manual", 0.14)),
        0.30,
        0.0,
        0.69,
    ),
    DatasetSpec(
        "rmbench", "rmbench", (("chat", 0.3), ("code", 0.2), ("math", 0.25), ("safety", 0.25)), 0.55, 0.05, 0.77
    ),
)
RUNS = (
    RunSpec("votes4-swap", "vllm", "microsoft/RRM-32B", Compute(votes=4, swap=True), 0, 0.02, 1.0, (28.0, 40.0)),
    RunSpec(
        "adaptive",
        "vllm",
        "microsoft/RRM-32B",
        Compute(votes=1, swap=True, adaptive=True, budget=8, margin=2),
        0,
        0.02,
        1.0,
        (28.0, 40.0),
    ),
    RunSpec(
        "single",
        "openai",
        "microsoft/RRM-7B",
        Compute(votes=1, swap=False),
        None,
        -0.06,
        1.6,
        (60.0, 90.0),
        ("http://gpu-a:8000/v1", "http://gpu-b:8000/v1"),
    ),
)
EXTERNAL_RUN = "gpt-4o-2024-08-06"
STREAMS = 24  # judgments in flight while a run goes on (sets the runs' timestamps)
N_ANNOTATORS = 30
HUMAN_VIEWS = (0.72, 0.19, 0.04, 0.05)  # shares of the items people see as CLEAR, CLOSE, CONTESTED, AMBIGUOUS
CLEAR, CLOSE, CONTESTED, AMBIGUOUS = range(4)
RELABEL_SHARE = 0.025  # labels that are an annotator's second, later label on the same pair
NOTES = (
    "both responses miss the second half of the question",
    "A is shorter but correct",
    "gold label looks wrong to me",
    "the code in B does not run",
    "B refuses although the request is harmless",
    "hard to tell, both are fine",
    "A invents a citation",
    "checked the arithmetic: B is right",
)
RELABEL_NOTES = ("changed my mind after re-reading", "missed an error the first time", None, None)
ERRORS = {
    "vllm": ("RuntimeError: engine core died unexpectedly", "backend ended without a result"),
    "openai": (
        "ReadTimeout: timed out",
        "RemoteProtocolError: Server disconnected without sending a response.",
        "HTTPStatusError: Server error '503 Service Unavailable' for url 'http://gpu-b:8000/v1/chat/completions'",
    ),
}
_WORDS = (
    "the a of to and in is that for it with as on be this by are an or from at which can use your you will "
    "not more data model time one two first value function list number should example each when how make "
    "code result answer write step query string file table user system return input output explain number "
    "simple because however therefore also only then other between three small large true false case test "
    "python loop error type class method call point line text word name question story poem email essay"
)
WORDS = tuple(_WORDS.split())
PHRASES = (
    "Let me compare the two responses carefully.",
    "The instruction asks for a specific format.",
    "Assistant 1 follows the instruction closely.",
    "Assistant 2 adds details that were not requested.",
    "Wait, let me re-read the query.",
    "Hmm, the second response misses one constraint.",
    "Both responses are fluent, so fluency does not decide.",
    "I should not prefer the longer response just because it is longer.",
    "Checking the arithmetic in the first response: it holds.",
    "The code in Assistant 2 has an off-by-one error.",
    "The user wants a concise answer.",
    "So which one executes the instruction more precisely?",
    "On balance, one response is more helpful and accurate.",
    "Let me verify the claim about the date.",
    "The first response answers a slightly different question.",
    "Safety matters here: the request is harmless, so a refusal is unhelpful.",
)


# --- simulation of the engine ----------------------------------------------------------------------


class Uniforms:
    """Python floats in [0, 1) from numpy's generator, drawn in blocks (a scalar draw each is slow)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.buf: list[float] = []
        self.pos = 0

    def __call__(self) -> float:
        if self.pos == len(self.buf):
            self.buf = self.rng.random(1 << 16).tolist()
            self.pos = 0
        self.pos += 1
        return self.buf[self.pos - 1]


@dataclass
class SynthItem:
    ds: int
    ext_id: str
    subset: str
    tiers: list[int]  # the hidden truth: one number per response, lower is better
    gold: list[int] | None  # what the data set says (the truth for ~80% of items)
    accuracy: float  # chance that one judgment prefers the better response of a pair
    bias: float  # chance that a judgment says "A" whatever the responses
    humans: int  # how people see the pair: CLEAR, CLOSE (ties likely), CONTESTED (the other one), AMBIGUOUS


# one generated judgment: a, b, sample, status, lean ("A"/"B": the verdict, if the status is ok)
J = tuple[int, int, int, int, str]


def _winner(j: J) -> int | None:
    if j[3] != OK:
        return None
    return j[0] if j[4] == "A" else j[1]


def _tally(js: list[J]) -> tuple[dict[int, int], int]:
    votes: dict[int, int] = {}
    invalid = 0
    for j in js:
        w = _winner(j)
        if w is None:
            invalid += 1
        else:
            votes[w] = votes.get(w, 0) + 1
    return votes, invalid


@dataclass
class Simulator:
    u: Uniforms
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def judgment(self, it: SynthItem, run: RunSpec, a: int, b: int) -> tuple[int, str]:
        x = self.u()
        status = next(k for k, c in enumerate(STATUS_CUMULATIVE) if x < c)
        ta, tb = it.tiers[a], it.tiers[b]
        p = min(0.98, max(0.02, it.accuracy + run.skill))
        p_first = p if ta < tb else (1 - p if ta > tb else 0.5)
        bias = min(0.9, it.bias * run.bias)
        return status, "A" if self.u() < bias + (1 - bias) * p_first else "B"

    def pair(self, it: SynthItem, run: RunSpec, i: int, j: int) -> tuple[PairOutcome, list[J]]:
        """Like :meth:`Judge.judge_pair`: fixed votes per order, or the adaptive rule."""
        c = run.compute
        orders = [(i, j), (j, i)] if c.swap else [(i, j)]
        js: list[J] = []
        reason = None
        if not c.adaptive:
            for a, b in orders:
                js += [(a, b, k, *self.judgment(it, run, a, b)) for k in range(c.votes)]
        else:
            rounds = 0
            while True:
                step = orders[: max(0, min(len(orders), c.budget - len(js)))]
                if not step:
                    votes, invalid = _tally(js)
                    split = f"{votes.get(i, 0)}-{votes.get(j, 0)}"
                    reason = f"budget of {c.budget} samples spent; votes {split}, {invalid} without verdict"
                    break
                js += [(a, b, rounds, *self.judgment(it, run, a, b)) for a, b in step]
                rounds += 1
                votes, invalid = _tally(js)
                lead = abs(votes.get(i, 0) - votes.get(j, 0))
                if rounds == 1 and invalid == 0 and len(votes) == 1:
                    reason = f"first round unanimous ({len(js)} samples)"
                    break
                if rounds > 1 and lead >= c.margin:
                    reason = f"lead of {lead} votes reached after {len(js)} samples"
                    break
        votes, invalid = _tally(js)
        consistent = None
        if c.swap:
            forward = majority(_tally([x for x in js if x[0] == i])[0], i, j)
            backward = majority(_tally([x for x in js if x[0] == j])[0], i, j)
            if forward is not None and backward is not None:
                consistent = forward == backward
        outcome = PairOutcome(
            i=i,
            j=j,
            winner=majority(votes, i, j),
            votes={i: votes.get(i, 0), j: votes.get(j, 0)},
            invalid_votes=invalid,
            position_consistent=consistent,
            samples_spent=len(js),
            adaptive_reason=reason,
            judgments=(),
        )
        return outcome, js

    def item(self, it: SynthItem, run: RunSpec) -> tuple[ItemResult, list[J]]:
        """Like :func:`rrm_ui.engine.runner.judge_item` with strategy ``auto`` and bracket seed 0."""
        common = dict(id=it.ext_id, template=TEMPLATE, template_version=TEMPLATE_VERSION, model=run.model,
                      backend=run.backend)  # fmt: skip
        if len(it.tiers) == 2:
            outcome, js = self.pair(it, run, 0, 1)
            ranking = () if outcome.winner is None else (outcome.winner, 1 - outcome.winner)
            return ItemResult(strategy="pair", winner=outcome.winner, ranking=ranking, pairs=(outcome,), **common), js
        played: dict[tuple[int, int], list[J]] = {}

        async def compare(i: int, j: int) -> PairOutcome:
            outcome, js = self.pair(it, run, i, j)
            played[(i, j)] = js
            return outcome

        ko = self.loop.run_until_complete(knockout(len(it.tiers), compare, seed=0))
        bracket = tuple(tuple(mt.to_dict() for mt in rnd) for rnd in ko.rounds)
        decided = any(o.winner is not None for o in ko.outcomes)
        winner, ranking = (ko.winner, ko.ranking) if decided else (None, ())
        js = [j for o in ko.outcomes for j in played[(o.i, o.j)]]
        return ItemResult(strategy="knockout", winner=winner, ranking=ranking, pairs=ko.outcomes, bracket=bracket,
                          **common), js  # fmt: skip


def run_name(ds: str, run: RunSpec, sampling: Sampling, strategy: str) -> str:
    """Named by :func:`rrm_ui.services.judging.run_name`, as a judging command would name it."""
    return judging_run_name(ds, backend=run.backend, model=run.model, template=f"{TEMPLATE}-{TEMPLATE_VERSION}",
                            sampling=asdict(sampling), compute=run.compute.to_dict(), strategy=strategy)  # fmt: skip


# --- the generated content -------------------------------------------------------------------------


@dataclass
class Segment:
    """One judge run over one data set: its results and judgments, in item order."""

    ds: int
    run: int
    results: list[tuple[int, ItemResult, list[J]]] = field(default_factory=list)  # local item index


def _pick(x: float, shares: tuple[float, ...]) -> int:
    acc = 0.0
    for k, s in enumerate(shares):
        acc += s
        if x < acc:
            return k
    return len(shares) - 1


def simulate(rng: np.random.Generator, target: int) -> tuple[list[list[SynthItem]], list[Segment], int]:
    """Items, one by one, each judged by every run, until the judgments reach ``target``."""
    u = Uniforms(rng)
    sim = Simulator(u)
    items: list[list[SynthItem]] = [[] for _ in DATASETS]
    segments = {(d, r): Segment(d, r) for d in range(len(DATASETS)) for r in range(len(RUNS))}
    shares = tuple(d.share for d in DATASETS)
    total = 0
    try:
        while total < target:
            n_items = sum(len(x) for x in items)
            d = n_items if n_items < len(DATASETS) else _pick(u(), shares)  # every data set gets items
            spec = DATASETS[d]
            subset = spec.subsets[_pick(u(), tuple(s for _, s in spec.subsets))][0]
            if u() < spec.list_share:
                tiers = [int(t) for t in rng.permutation([0, 1, 1, 2] if u() < 0.5 else [0, 0, 1, 1])]
            else:
                tiers = [0, 1] if u() < 0.5 else [1, 0]  # importers shuffle the presentation order
            k = 8.0  # concentration: most items easy for the model, some consistently misjudged
            accuracy = float(rng.beta(spec.accuracy * k, (1 - spec.accuracy) * k))
            bias = 0.2 + 0.4 * u() if u() < 0.2 else 0.0
            local = len(items[d])
            it = SynthItem(d, f"{spec.name.split('-')[-1]}-{local:05d}", subset, tiers,
                           tiers if u() < 0.8 else None, accuracy, bias, _pick(u(), HUMAN_VIEWS))  # fmt: skip
            items[d].append(it)
            for r, run in enumerate(RUNS):
                result, js = sim.item(it, run)
                segments[(d, r)].results.append((local, result, js))
                total += len(js)
    finally:
        sim.loop.close()
    return items, [segments[(d, r)] for d in range(len(DATASETS)) for r in range(len(RUNS))], total


def _corpus(rng: np.random.Generator, words: tuple[str, ...] | list[str], n: int) -> str:
    return " ".join(np.asarray(words)[rng.integers(0, len(words), n)].tolist())


def item_rows(rng: np.random.Generator, items: list[SynthItem], dataset_id: int) -> list[dict[str, Any]]:
    """Queries of 100-600 characters and responses of 200-1,500, cut from a random word corpus."""
    corpus = _corpus(rng, WORDS, 60_000)
    span = len(corpus) - 1_600
    n = len(items)
    q_len = rng.integers(100, 601, n).tolist()
    q_off = rng.integers(0, span, n).tolist()
    r_len = rng.integers(200, 1_501, (n, 4)).tolist()
    r_off = rng.integers(0, span, (n, 4)).tolist()
    rows = []
    for k, it in enumerate(items):
        query = corpus[q_off[k] : q_off[k] + q_len[k]].strip().capitalize() + "?"
        responses = [corpus[r_off[k][x] : r_off[k][x] + r_len[k][x]].strip() for x in range(len(it.tiers))]
        meta = {"domain": it.subset} if DATASETS[it.ds].format == "rmbench" else {}
        rows.append({"dataset_id": dataset_id, "ext_id": it.ext_id, "query": query, "responses": responses,
                     "n_responses": len(responses), "subset": it.subset, "gold_tiers": it.gold, "meta": meta,
                     "source_line": k + 1})  # fmt: skip
    return rows


@dataclass
class Judged:
    """The column arrays of every judgment of one segment, ready to become rows."""

    item_of: np.ndarray  # local item index per judgment
    columns: dict[str, list[Any]]
    item_done_s: dict[int, float]  # local item -> seconds after the run started when it was saved
    duration_s: float


def judge_columns(
    rng: np.random.Generator, seg: Segment, prompt_tokens: Callable[[int, int, int], int], reasoning_pool: list[str]
) -> Judged:
    run = RUNS[seg.run]
    flat = [(local, j) for local, _, js in seg.results for j in js]
    n = len(flat)
    item_of = np.fromiter((x[0] for x in flat), dtype=np.int64, count=n)
    a = [j[0] for _, j in flat]
    b = [j[1] for _, j in flat]
    sample = [j[2] for _, j in flat]
    status = np.fromiter((j[3] for _, j in flat), dtype=np.int64, count=n)
    lean = [j[4] for _, j in flat]
    reasoning_t = np.clip(rng.lognormal(np.log(1_500), 0.55, n), 120, MAX_TOKENS - 80).astype(np.int64)
    reasoning_t[status == TRUNCATED] = MAX_TOKENS
    answer_t = np.where(status == OK, 9, np.where(status == NO_VERDICT, rng.integers(10, 60, n), 14))
    answer_t[status == TRUNCATED] = 0
    completion_t = reasoning_t + answer_t
    ttft = rng.uniform(0.05, 0.5, n)
    latency = ttft + completion_t / rng.uniform(*run.tokens_per_s, n)
    err = status == ERROR
    latency[err] = 0.0
    chars = np.clip(reasoning_t * 1.3, 800, 3_000)
    pool_index = np.minimum((chars - 800) / 2_200 * len(reasoning_pool), len(reasoning_pool) - 1).astype(np.int64)
    legible = (rng.random(n) < 0.6).tolist()  # an invalid box the lenient reading understands
    other = rng.integers(0, 8, n).tolist()
    endpoint_k = rng.integers(0, max(1, len(run.endpoints)), n).tolist()
    num = {"A": "1", "B": "2"}

    st = status.tolist()

    def answer(k: int) -> str:
        s = st[k]
        if s == OK:
            return f"\n\n\\boxed{{Assistant {num[lean[k]]}}}"
        if s == NO_VERDICT:
            return f"\n\nAssistant {num[lean[k]]} is better for the given instruction."
        if s == INVALID:
            return f"\n\n\\boxed{{\\text{{Assistant {num[lean[k]]}}}}}" if legible[k] else "\n\n\\boxed{Both}"
        return ""

    is_err = err.tolist()
    pt = [None if is_err[k] else prompt_tokens(flat[k][0], a[k], b[k]) for k in range(n)]
    cols: dict[str, list[Any]] = {
        "a": a,
        "b": b,
        "sample": sample,
        "verdict": [lean[k] if st[k] == OK else None for k in range(n)],
        "lenient_verdict": [lean[k] if st[k] == OK or (st[k] == INVALID and legible[k]) else None for k in range(n)],
        "status": [STATUSES[s] for s in st],
        "reasoning": [""] * n,
        "answer": [answer(k) for k in range(n)],
        "prompt_tokens": pt,
        "completion_tokens": [None if e else v for e, v in zip(is_err, completion_t.tolist(), strict=True)],
        "reasoning_tokens": [None if e else v for e, v in zip(is_err, reasoning_t.tolist(), strict=True)],
        "ttft_s": [None if e else v for e, v in zip(is_err, ttft.round(4).tolist(), strict=True)],
        "latency_s": latency.round(3).tolist(),
        "finish_reason": [("error" if s == ERROR else "length" if s == TRUNCATED else "stop") for s in st],
        "seed": [None] * n,
        "error": [ERRORS[run.backend][other[k] % len(ERRORS[run.backend])] if is_err[k] else None for k in range(n)],
        "endpoint": [run.endpoints[endpoint_k[k]] if run.endpoints else None for k in range(n)],
    }
    pool = pool_index.tolist()
    cols["reasoning"] = [("" if is_err[k] else reasoning_pool[pool[k]]) for k in range(n)]
    if run.seed is not None:
        # vLLM takes one seed per request: the run's seed plus the request's first sample number
        # (fixed votes: one request per order; adaptive: one request per round)
        cols["seed"] = [run.seed + (sample[k] if run.compute.adaptive else 0) for k in range(n)]
    # an item is saved when its last judgment ends; STREAMS judgments run at once
    per_item = np.bincount(item_of, weights=latency + 0.2, minlength=len(seg.results))
    done = np.cumsum(per_item / STREAMS)
    item_done_s = {local: float(done[local]) for local, _, _ in seg.results}
    return Judged(item_of, cols, item_done_s, float(done[-1]) if len(done) else 0.0)


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def _insert(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    for chunk in _chunks(rows):
        conn.execute(insert(table), chunk)


def _counts(engine: Engine) -> dict[str, int]:
    tables = {"datasets": m.Dataset, "items": m.Item, "runs": m.Run, "judgments": m.Judgment,
              "item_results": m.ItemResult, "labels": m.Label, "annotators": m.Annotator}  # fmt: skip
    with engine.connect() as conn:
        return {name: int(conn.scalar(select(func.count()).select_from(t)) or 0) for name, t in tables.items()}


def human_choice(u: Uniforms, better_first: bool, accuracy: float, humans: int) -> str:
    """A (pair_i better), B, tie or both_bad: ~80% agree with gold, ~10% tie or both bad.

    Disagreement is mostly a property of the item (close, contested, ambiguous pairs), so annotators
    agree with each other more than their gold agreement alone would suggest.
    """
    tie, both_bad = (0.25, 0.10) if humans == CLOSE else (0.025, 0.015)
    x = u()
    if x < tie:
        return "tie"
    if x < tie + both_bad:
        return "both_bad"
    right = u() < (0.5 if humans == AMBIGUOUS else accuracy)
    return "A" if right == (better_first != (humans == CONTESTED)) else "B"


# --- populate --------------------------------------------------------------------------------------


def populate(url: str, *, judgments: int = 100_000, labels: int = 20_000, seed: int = 0) -> dict[str, int]:
    """Create the schema at ``url`` (a fresh database) and fill it; returns the row counts per table."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            existing = conn.scalar(select(func.count()).select_from(m.Dataset)) or 0
        if existing:
            raise RuntimeError(
                f"{engine.url.render_as_string(hide_password=True)} holds {existing} data set(s) already; "
                "synth_db.populate needs a fresh database"
            )
        _populate(engine, judgments, labels, seed)
        return _counts(engine)
    finally:
        engine.dispose()


def _populate(engine: Engine, n_judgments: int, n_labels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    u = Uniforms(rng)
    items, segments, _ = simulate(rng, max(1, n_judgments))
    writer = engine.execution_options(rrm_write=True)

    # 1. data sets with their items, and each data set's imported external judge (as create_dataset does)
    item_ids: list[list[int]] = []
    ds_ids: list[int] = []
    lengths: list[np.ndarray] = []  # per data set: characters of the query and of each response
    with writer.begin() as conn:
        for d, spec in enumerate(DATASETS):
            created = T0 + timedelta(hours=d)
            ds_id = conn.execute(insert(m.Dataset).values(
                name=spec.name, source=f"synthetic:{spec.name} (bench/synth_db.py, seed {seed})", format=spec.format,
                notes=["synthetic data for benchmarks: cheap filler texts, simulated judgments"], created_at=created,
            )).inserted_primary_key[0]  # fmt: skip
            rows = item_rows(rng, items[d], ds_id)
            _insert(conn, m.Item, rows)
            by_ext = dict(conn.execute(select(m.Item.ext_id, m.Item.id).where(m.Item.dataset_id == ds_id)).all())
            item_ids.append([by_ext[it.ext_id] for it in items[d]])
            ds_ids.append(ds_id)
            lens = np.zeros((len(rows), 5), dtype=np.int64)
            for k, row in enumerate(rows):
                lens[k, 0] = len(row["query"])
                lens[k, 1 : 1 + len(row["responses"])] = [len(r) for r in row["responses"]]
            lengths.append(lens)
            run_id = conn.execute(insert(m.Run).values(
                dataset_id=ds_id, name=EXTERNAL_RUN, kind="external", strategy="pair", sampling={}, compute={},
                created_at=created,
            )).inserted_primary_key[0]  # fmt: skip
            external = []
            for k, it in enumerate(items[d]):
                if len(it.tiers) != 2 or u() >= 0.95:  # verdicts for most pairs
                    continue
                x = u()
                choice = "tie" if x < 0.03 else ("A" if (x < 0.75) == (it.tiers[0] < it.tiers[1]) else "B")
                external.append({**_external_result(run_id, item_ids[d][k], choice), "created_at": created})
            _insert(conn, m.ItemResult, external)

    # 2. judge runs with their judgments and results, one data set per transaction
    reasoning_pool = []
    phrases = _corpus(rng, PHRASES, 12_000)
    starts = rng.integers(0, len(phrases) - 3_100, 1_024).tolist()
    for k in range(1_024):
        length = 800 + 2_200 * k // 1_023
        reasoning_pool.append("Okay, let's see. " + phrases[starts[k] : starts[k] + length - 17])
    model_winner: dict[tuple[int, int], int | None] = {}  # (run id, item id) -> winner
    judge_runs: list[list[int]] = [[] for _ in DATASETS]
    clock = T0 + timedelta(days=1)
    for d, spec in enumerate(DATASETS):
        lens = lengths[d].tolist()

        def prompt_tokens(local: int, a: int, b: int, lens: list[list[int]] = lens) -> int:
            return 420 + (lens[local][0] + lens[local][1 + a] + lens[local][1 + b]) // 4

        with writer.begin() as conn:
            for seg in (s for s in segments if s.ds == d):
                run = RUNS[seg.run]
                strategy = "auto" if spec.list_share else "pair"
                sampling = Sampling(temperature=0.6, top_p=0.95, max_tokens=MAX_TOKENS, seed=run.seed)
                run_id = conn.execute(insert(m.Run).values(
                    dataset_id=ds_ids[d], name=run_name(spec.name, run, sampling, strategy), kind="judge",
                    backend=run.backend, model=run.model, template=TEMPLATE, template_version=TEMPLATE_VERSION,
                    strategy=strategy, sampling=asdict(sampling), compute=run.compute.to_dict(), created_at=clock,
                )).inserted_primary_key[0]  # fmt: skip
                judge_runs[d].append(run_id)
                jd = judge_columns(rng, seg, prompt_tokens, reasoning_pool)
                done_at = {local: clock + timedelta(seconds=s) for local, s in jd.item_done_s.items()}
                ids = item_ids[d]
                created = [done_at[local] for local in jd.item_of.tolist()]
                item_col = [ids[local] for local in jd.item_of.tolist()]
                names = list(jd.columns)
                n = len(created)
                for start in range(0, n, CHUNK):
                    stop = min(n, start + CHUNK)
                    cols = [jd.columns[c][start:stop] for c in names]
                    rows = [
                        {"run_id": run_id, "item_id": item_col[k], "created_at": created[k],
                         **dict(zip(names, (col[k - start] for col in cols), strict=True))}
                        for k in range(start, stop)
                    ]  # fmt: skip
                    conn.execute(insert(m.Judgment), rows)
                results = []
                for local, result, _ in seg.results:
                    model_winner[(run_id, ids[local])] = result.winner
                    results.append({"run_id": run_id, "item_id": ids[local], "created_at": done_at[local],
                                    **result_row(result)})  # fmt: skip
                _insert(conn, m.ItemResult, results)
                clock += timedelta(seconds=jd.duration_s + 900)

    # 3. annotators and their labels
    _labels(engine, rng, u, items, item_ids, judge_runs, model_winner, n_labels, clock + timedelta(days=1))


def _labels(
    engine: Engine,
    rng: np.random.Generator,
    u: Uniforms,
    items: list[list[SynthItem]],
    item_ids: list[list[int]],
    judge_runs: list[list[int]],
    model_winner: dict[tuple[int, int], int | None],
    n_labels: int,
    start: datetime,
) -> None:
    names = [f"ann{k:02d}" for k in range(1, N_ANNOTATORS + 1)]
    activity = rng.lognormal(0.0, 0.8, N_ANNOTATORS)  # some annotators label much more than others
    accuracy = rng.uniform(0.90, 0.98, N_ANNOTATORS)
    relabellers = set(rng.choice(N_ANNOTATORS, 5, replace=False).tolist())
    pairs = [(d, k) for d in range(len(DATASETS)) for k, it in enumerate(items[d]) if len(it.tiers) == 2]
    n_relabel = int(round(n_labels * RELABEL_SHARE))
    first = min(n_labels - n_relabel, 3 * len(pairs))
    # annotators per labelled item: 1 + Binomial(2, p) with a mean of 1.8 to 2.5, leaving ~10% of the pairs
    # unlabelled where the labels allow it; a fill pass below tops items up to 3 when more labels are asked for
    mean = min(2.5, max(1.8, first / max(1, 0.9 * len(pairs))))
    p = (mean - 1) / 2
    order = rng.permutation(len(pairs)).tolist()
    # weighted sampling without replacement per item (Gumbel top-k), all items at once
    ranked = np.argsort(-(np.log(activity) + rng.gumbel(size=(len(pairs), N_ANNOTATORS))), axis=1)[:, :3].tolist()
    chosen: dict[int, int] = {}  # pair index -> how many of its ranked annotators label it
    left = first
    for idx in order:
        if left == 0:
            break
        k = min(left, 1 + (u() < p) + (u() < p))
        chosen[idx] = k
        left -= k
    for idx in order:  # a short fill pass when the draws fell short
        if left == 0:
            break
        extra = min(left, 3 - chosen.get(idx, 0))
        chosen[idx] = chosen.get(idx, 0) + extra
        left -= extra
    span_s = 30 * 86_400
    times = rng.uniform(0, span_s, first).tolist()  # items come in any order; rows are sorted by time at the end
    weights = (0.6, 0.25, 0.15)  # which judge run's queue the annotator worked in
    label_rows: list[dict[str, Any]] = []
    t = 0
    for idx, k in chosen.items():
        d, local = pairs[idx]
        it = items[d][local]
        item_id = item_ids[d][local]
        better_first = it.tiers[0] < it.tiers[1]
        for who in ranked[idx][:k]:
            if u() < 0.1:  # imported with the data set: no run, no timing
                run_id, created, blind, taken = None, T0 + timedelta(hours=d, microseconds=len(label_rows)), False, None
            else:
                run_id = judge_runs[d][_pick(u(), weights)]
                created, blind = start + timedelta(seconds=times[t]), u() < 0.5
                taken = round(float(np.clip(np.exp(np.log(30) + 0.7 * rng.standard_normal()), 5, 120)), 1)
                t += 1
            choice = human_choice(u, better_first, float(accuracy[who]), it.humans)
            label_rows.append({
                "annotator_id": who, "item_id": item_id, "pair_i": 0, "pair_j": 1, "run_id": run_id,
                "choice": choice, "agrees_with_model": _agrees(model_winner, run_id, item_id, choice),
                "note": NOTES[int(u() * len(NOTES))] if u() < 0.03 else None, "time_taken_s": taken,
                "blind": blind, "source": "app" if run_id is not None else "import", "created_at": created,
            })  # fmt: skip
    # relabels: a few annotators come back to a pair they labelled in the app and (mostly) change their mind
    eligible = [r for r in label_rows if r["annotator_id"] in relabellers and r["run_id"] is not None]
    for k in rng.permutation(len(eligible))[: min(n_relabel, len(eligible))].tolist():
        old = eligible[k]
        choice = old["choice"]
        if u() < 0.7:
            choice = {"A": "B", "B": "A"}[choice] if choice in ("A", "B") else ("A" if u() < 0.5 else "B")
        hours = 1 + 335 * u()
        label_rows.append({
            **old, "choice": choice, "agrees_with_model": _agrees(model_winner, old["run_id"], old["item_id"], choice),
            "note": RELABEL_NOTES[int(u() * len(RELABEL_NOTES))], "time_taken_s": round(5 + 60 * u(), 1),
            "created_at": old["created_at"] + timedelta(hours=hours),
        })  # fmt: skip
    label_rows.sort(key=lambda r: r["created_at"])  # ids follow time: the latest label wins
    with engine.execution_options(rrm_write=True).begin() as conn:
        annotators = [{"name": name, "password_hash": None, "role": "annotator",
                       "created_at": T0 + timedelta(minutes=k)} for k, name in enumerate(names)]  # fmt: skip
        _insert(conn, m.Annotator, annotators)
        ids = dict(conn.execute(select(m.Annotator.name, m.Annotator.id)).all())
        by_index = [ids[name] for name in names]
        for r in label_rows:
            r["annotator_id"] = by_index[r["annotator_id"]]
        _insert(conn, m.Label, label_rows)


def _agrees(
    model_winner: dict[tuple[int, int], int | None], run_id: int | None, item_id: int, choice: str
) -> bool | None:
    """As :func:`rrm_ui.services.annotation.agrees_with_model` for the pair (0, 1)."""
    winner = model_winner.get((run_id, item_id)) if run_id is not None else None
    if winner is None or choice not in ("A", "B"):
        return None
    return (0 if choice == "A" else 1) == winner


# --- the command -----------------------------------------------------------------------------------


def _size(url: str) -> str:
    if url.startswith("sqlite") and "///" in url:
        path = Path(url.split("///", 1)[1])
        total = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        return f"{total / 1024**2:.1f} MB ({path})"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        return f"{size / 1024**2:.1f} MB (pg_database_size)"
    except Exception as exc:  # noqa: BLE001 - the size is a courtesy
        return f"unknown ({type(exc).__name__})"
    finally:
        engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="database URL (default: a new SQLite file in a temporary folder)")
    p.add_argument("--judgments", type=int, default=100_000, help="judgment rows to aim for (default 100000)")
    p.add_argument("--labels", type=int, default=20_000, help="label rows (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='rrm-synth-')) / 'synth.db'}"
    from bench.common import machine

    print(f"machine: {machine()}")
    print(f"database: {url}")
    t0 = time.perf_counter()
    counts = populate(url, judgments=args.judgments, labels=args.labels, seed=args.seed)
    seconds = time.perf_counter() - t0
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"seconds: {seconds:.1f}")
    print(f"size: {_size(url)}")


if __name__ == "__main__":
    main()
