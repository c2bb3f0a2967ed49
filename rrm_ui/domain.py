"""Domain types that cross the layers.

Small frozen dataclasses: they carry no behaviour that touches a database, a model
or the UI, so every layer can import them.  ``to_dict`` forms are what the CLI
writes and what later layers store.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    """Which of the two *shown* responses the judge preferred."""

    A = "A"  # the response shown first ("Assistant 1")
    B = "B"  # the response shown second ("Assistant 2")


class Status(enum.StrEnum):
    """Outcome of one generated judgment (see docs/protocol.md)."""

    OK = "ok"  # a verdict was parsed by the strict rule
    TRUNCATED = "truncated"  # no ``</think>``: the reasoning never closed (token limit, early stop)
    NO_VERDICT = "no_verdict"  # ``</think>`` present, but no ``\\boxed{}`` after it
    INVALID = "invalid"  # the last box after ``</think>`` holds something other than the two answers
    ERROR = "error"  # the backend failed; ``error`` holds its message


@dataclass(frozen=True)
class Item:
    """A query and two or more candidate responses to compare."""

    id: str
    query: str
    responses: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.responses) < 2:
            raise ValueError("an item needs at least two responses")


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. Defaults follow the RRM paper's evaluation."""

    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 8192  # the thinking budget: smaller values cut off </think> and the verdict
    seed: int | None = None

    def with_seed(self, seed: int | None) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_tokens, seed)


@dataclass(frozen=True)
class GenRequest:
    """One prompt sent to a backend, asking for ``n`` independent samples."""

    request_id: str
    messages: tuple[dict[str, str], ...]
    sampling: Sampling
    n: int = 1


@dataclass(frozen=True)
class Delta:
    """New text of one sample as it arrives. Either field may be empty."""

    sample: int
    reasoning: str = ""
    answer: str = ""


@dataclass(frozen=True)
class GenRecord:
    """What a backend reports when one sample ends (successfully or not)."""

    sample: int
    reasoning: str  # text inside <think>...</think> (without the tags)
    answer: str  # text after </think>; empty when the block never closed
    think_closed: bool  # whether </think> was produced
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    ttft_s: float | None
    latency_s: float
    finish_reason: str | None  # "stop", "length", "abort", "error", ...
    model: str
    backend: str
    sampling: Sampling
    seed: int | None
    error: str | None = None
    endpoint: str | None = None
    # The failure may go away by trying again (the server was unreachable, the connection or
    # stream broke, 5xx after the backend's own retries); a refused request (HTTP 4xx) is not.
    transient: bool = False

    @property
    def raw_output(self) -> str:
        """The output as the official rule sees it: ``"<think>" + generated text``."""
        if self.think_closed:
            return f"<think>{self.reasoning}</think>{self.answer}"
        return f"<think>{self.reasoning}"


@dataclass(frozen=True)
class ParsedVerdict:
    status: Status
    verdict: Verdict | None  # strict reading (official rule)
    lenient_verdict: Verdict | None  # tolerant reading, reported apart, never used for decisions
    boxed: str | None  # the content of the last box after </think>, if any


@dataclass(frozen=True)
class Judgment:
    """One generated judgment of an ordered pair: response ``a`` shown first, ``b`` second."""

    a: int
    b: int
    sample: int
    verdict: Verdict | None
    status: Status
    lenient_verdict: Verdict | None
    reasoning: str
    answer: str
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    ttft_s: float | None
    latency_s: float
    finish_reason: str | None
    seed: int | None
    error: str | None = None
    endpoint: str | None = None
    # 0 for the first try of this sample; a sample whose try failed for a transient reason is
    # tried again (``Judge(retries=...)``) under the same sample number with ``attempt + 1``.
    # The failed try is kept (status ``error`` and its reason); only the last try votes.
    attempt: int = 0

    @property
    def winner(self) -> int | None:
        """Index (into the item's responses) of the preferred response, or None."""
        if self.verdict is Verdict.A:
            return self.a
        if self.verdict is Verdict.B:
            return self.b
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict.value if self.verdict else None
        d["lenient_verdict"] = self.lenient_verdict.value if self.lenient_verdict else None
        d["status"] = self.status.value
        d["winner"] = self.winner
        return d


def last_tries(judgments: list[Judgment] | tuple[Judgment, ...]) -> list[Judgment]:
    """The judgments that count: for each (a, b, sample) only its last try (highest ``attempt``)."""
    last: dict[tuple[int, int, int], int] = {}
    for jd in judgments:
        key = (jd.a, jd.b, jd.sample)
        last[key] = max(last.get(key, 0), jd.attempt)
    return [jd for jd in judgments if jd.attempt == last[(jd.a, jd.b, jd.sample)]]


@dataclass(frozen=True)
class PairOutcome:
    """Aggregated result of judging responses ``i`` and ``j`` (in one or both orders)."""

    i: int
    j: int
    winner: int | None  # majority over valid votes; None on a tie or no valid vote
    votes: dict[int, int]  # response index -> number of samples that chose it
    invalid_votes: int  # samples without a strict verdict (truncated, no_verdict, invalid, error)
    position_consistent: bool | None  # None unless both orders produced a majority
    samples_spent: int
    adaptive_reason: str | None
    judgments: tuple[Judgment, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "i": self.i,
            "j": self.j,
            "winner": self.winner,
            "votes": {str(k): v for k, v in self.votes.items()},
            "invalid_votes": self.invalid_votes,
            "position_consistent": self.position_consistent,
            "samples_spent": self.samples_spent,
            "adaptive_reason": self.adaptive_reason,
        }


@dataclass(frozen=True)
class Compute:
    """How much test-time compute to spend on each pair."""

    votes: int = 1  # samples per presentation order
    swap: bool = False  # judge both orders
    adaptive: bool = False  # start with one sample per order, add more only where they disagree
    budget: int = 8  # adaptive: most samples per pair (both orders together)
    margin: int = 2  # adaptive: stop once the leader is this many votes ahead

    def __post_init__(self) -> None:
        if self.votes < 1:
            raise ValueError("votes must be at least 1")
        if self.budget < 1:
            raise ValueError("budget must be at least 1")


@dataclass(frozen=True)
class ItemResult:
    """Everything decided about one item."""

    id: str
    strategy: str
    winner: int | None
    ranking: tuple[int, ...]
    pairs: tuple[PairOutcome, ...]
    template: str
    template_version: str
    model: str
    backend: str
    ratings: dict[str, dict[int, float]] = field(default_factory=dict)
    bracket: tuple[tuple[dict[str, Any], ...], ...] = ()

    @property
    def position_consistent(self) -> bool | None:
        """False if any pair's verdict flipped with the order; None if no pair could tell."""
        flags = [p.position_consistent for p in self.pairs if p.position_consistent is not None]
        return None if not flags else all(flags)

    @property
    def votes(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for p in self.pairs:
            for k, v in p.votes.items():
                total[k] = total.get(k, 0) + v
        return total


# --- data sets, labels -------------------------------------------------------------------------


class Choice(enum.StrEnum):
    """A preference between the two responses of a pair, as a human (or a gold label) states it."""

    A = "A"  # the first response of the pair is better
    B = "B"  # the second response is better
    TIE = "tie"
    BOTH_BAD = "both_bad"


@dataclass(frozen=True)
class ImportedItem:
    """One item read from a file, before it is stored.

    ``gold_tiers`` orders the responses when the source has a gold label: one number per
    response, lower is better, equal numbers are unordered (a pair with gold A is ``(0, 1)``;
    RM-Bench's three chosen and three rejected are ``(0, 0, 0, 1, 1, 1)``).
    """

    ext_id: str
    query: str
    responses: tuple[str, ...]
    source_line: int  # 1-based line (JSONL), row (CSV, Parquet, JSON list) in the file
    subset: str | None = None
    gold_tiers: tuple[int, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportedLabel:
    """A human's existing label for a pair item (an annotator column of the source)."""

    ext_id: str
    annotator: str
    choice: Choice


@dataclass(frozen=True)
class ImportedVerdict:
    """Another judge's verdict for a pair item, joined on the item id (becomes an external run)."""

    ext_id: str
    choice: Choice  # A, B or TIE


@dataclass(frozen=True)
class ImportedDataset:
    """Everything one import produces; written to the database in one transaction or not at all."""

    name: str
    source: str
    format: str
    items: tuple[ImportedItem, ...]
    labels: tuple[ImportedLabel, ...] = ()
    external_run: str | None = None
    external: tuple[ImportedVerdict, ...] = ()
    notes: tuple[str, ...] = ()  # what the importer decided (e.g. presentation order shuffled)


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    format: str
    source: str
    n_items: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredItem:
    """An item as stored: the database id beside the engine's :class:`Item` (whose id is the source id)."""

    db_id: int
    item: Item
    subset: str | None
    gold_tiers: tuple[int, ...] | None


@dataclass(frozen=True)
class RunInfo:
    id: int
    dataset_id: int | None
    name: str
    kind: str  # judge | external
    backend: str | None = None
    model: str | None = None
    template: str | None = None
    template_version: str | None = None
    strategy: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HumanLabel:
    """A human's view of the pair (``pair_i``, ``pair_j``) of an item. ``Choice.A``: ``pair_i`` is better."""

    annotator: str
    item_db_id: int
    choice: Choice
    pair_i: int = 0
    pair_j: int = 1
    run_id: int | None = None  # the run whose verdict the annotator saw
    agrees_with_model: bool | None = None
    note: str | None = None
    time_taken_s: float | None = None
    blind: bool = False


# --- the app: accounts, the annotation queue, batch jobs -------------------------------------


class Role(enum.StrEnum):
    ANNOTATOR = "annotator"
    ADMIN = "admin"


@dataclass(frozen=True)
class Account:
    """An annotator account (no password hash leaves the storage layer)."""

    id: int
    name: str
    role: Role
    has_password: bool


class QueueFilter(enum.StrEnum):
    """Which items the annotation queue serves (always only items this annotator has not labelled)."""

    UNLABELLED = "unlabelled"  # items with fewer labels than the overlap asks for
    VOTE_SPLIT = "vote_split"  # the run's votes on the item were not unanimous
    POSITION_INCONSISTENT = "position_inconsistent"  # the verdict flipped between presentation orders
    TRUNCATED = "truncated"  # some judgment of the item ran out of tokens
    NO_VERDICT = "no_verdict"  # the run reached no decision on the item


@dataclass(frozen=True)
class QueueSpec:
    """One annotation queue: a data set, optionally a run whose verdicts are audited, a filter."""

    dataset_id: int
    run_id: int | None = None  # None: plain preference collection, no model verdict shown
    filter: QueueFilter = QueueFilter.UNLABELLED
    subset: str | None = None
    overlap: int = 1  # how many different annotators should label each item


@dataclass(frozen=True)
class QueueProgress:
    done: int  # items of this queue the annotator has labelled
    left: int  # items the queue can still serve to this annotator
    total: int  # items matching the queue's filter


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobInfo:
    id: int
    run_id: int
    run_name: str
    dataset_id: int
    dataset: str
    status: JobStatus
    items_total: int
    items_done: int
    judgments_error: int
    tokens: int
    active_s: float
    message: str | None
    owner: str | None
    bracket_seed: int | None
    created_at: Any
    updated_at: Any

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.active_s if self.active_s > 0 else None
