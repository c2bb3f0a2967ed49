"""Domain types that cross the layers.

Small frozen dataclasses: they carry no behaviour that touches a database, a model
or the UI, so every layer can import them.  ``to_dict`` forms are what the CLI
writes and what later layers store.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


class Verdict(enum.StrEnum):
    """Which of the two *shown* responses the judge preferred."""

    A = "A"  # the response shown first ("Assistant 1")
    B = "B"  # the response shown second ("Assistant 2")
    # a format that can tie (JudgeFormat.can_tie) said neither is better; stored as "T" (the
    # verdict column holds one character). A tie vote counts toward neither response and is no
    # invalid vote (engine.judge.tally).
    TIE = "T"


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
    # the whole prompt as text, sent without the model's chat template (a format whose official code
    # builds its prompt itself: JudgeFormat.uses_chat_template False); ``messages`` is then empty
    prompt: str | None = None
    # budget forcing (Compute.budget_mode "force"): generated text that continues the rendered prompt (a
    # judgment's reasoning and the forced close); the backend generates what follows it, all of it
    # answer text (its samples start after </think>). Only backends with ``continues`` take it.
    continuation: str | None = None
    # budget forcing in one step (a backend with ``native_close``, vLLM's thinking_token_budget): the
    # backend closes the thinking after this many tokens; ``sampling.max_tokens`` is thinking + answer
    thinking_budget: int | None = None
    # scheduling priority on a server that schedules by priority (vLLM ``--scheduling-policy priority``:
    # lower runs earlier, 0 the default): interactive judging sends less than batch jobs. The openai
    # backend sends it only with its ``priority_scheduling`` setting; other backends ignore it
    priority: int = 0


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
    # budget forcing: the thinking reached its budget and </think> was written by the engine (or the
    # backend) after this many generated tokens, not by the model; None: the model closed it or nobody did
    forced_at: int | None = None

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
    # budget forcing (Compute.budget_mode "force"): the thinking reached its budget, so </think> was
    # appended after ``forced_at`` generated tokens and the model answered in the answer budget
    forced_close: bool = False
    forced_at: int | None = None
    # a scalar reward model (judge format scalar-rm, engine.scalar): the score of response ``a`` and of
    # response ``b``; the verdict is the higher one (equal: a tie). None for a generative judge.
    score_a: float | None = None
    score_b: float | None = None
    # adaptive escalation (Compute.escalate_to): the thinking budget this judgment ran with, raised above the
    # run's max_tokens because its pair was still undecided; None for a judgment at the run's own budget
    escalated_to: int | None = None

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Judgment:
        """The judgment :meth:`to_dict` wrote (its derived ``winner`` and any extra keys ignored)."""
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in d.items() if k in names}
        values["status"] = Status(d["status"])
        values["verdict"] = Verdict(d["verdict"]) if d.get("verdict") else None
        values["lenient_verdict"] = Verdict(d["lenient_verdict"]) if d.get("lenient_verdict") else None
        return cls(**values)


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

    @classmethod
    def from_dict(cls, d: dict[str, Any], judgments: tuple[Judgment, ...] = ()) -> PairOutcome:
        """The outcome :meth:`to_dict` wrote, with its judgments (kept apart by ``to_dict``)."""
        return cls(
            i=int(d["i"]),
            j=int(d["j"]),
            winner=d["winner"],
            votes={int(k): int(v) for k, v in d["votes"].items()},
            invalid_votes=int(d["invalid_votes"]),
            position_consistent=d["position_consistent"],
            samples_spent=int(d["samples_spent"]),
            adaptive_reason=d["adaptive_reason"],
            judgments=tuple(judgments),
        )


ORDERS = ("given", "shuffled")

#: what a NUL character (U+0000) in generated or stored text becomes: U+FFFD, the replacement character.
#: PostgreSQL's text types cannot hold U+0000, and a byte-level tokenizer can decode a token to it; the
#: backends' sample tracker and the storage's text columns both use this, so a live panel shows the text
#: that is stored, on SQLite and PostgreSQL alike.
NUL_STAND_IN = "\ufffd"


@dataclass(frozen=True)
class Compute:
    """How much test-time compute to spend on each pair."""

    # each field's "help" is its doc and its rrm-ui judge flag (cli/options.add_compute_options)
    votes: int = field(default=1, metadata={"cli": True, "help": "samples per presentation order (majority vote)"})
    swap: bool = field(default=False, metadata={"cli": True,
                       "help": "judge both orders; flag position-inconsistent pairs"})  # fmt: skip
    adaptive: bool = field(default=False, metadata={
        "cli": True, "help": "two samples first, more only where they disagree, up to --budget"})  # fmt: skip
    # adaptive: most samples per pair (both orders together); None: default_budget(votes), the one
    # rule the CLI, the Judge, Batch and Explorer tabs and jobs share
    budget: int | None = field(default=None, metadata={"cli": True, "help": "adaptive: most samples per pair"})
    margin: int = field(default=2, metadata={"cli": True,
                        "help": "adaptive, margin rule: stop when the leader is this many votes ahead"})  # fmt: skip
    # adaptive's stopping rule: "margin" (rrm-ui's: a unanimous first round, or a lead of `margin` votes) or
    # "beta" (Adaptive-Consistency, Aggarwal et al. 2023: stop once the Beta posterior of the leader's vote
    # share puts it above one half with probability `confidence`; engine.judge.beta_confidence)
    stopping: str = field(default="margin", metadata={
        "cli": True, "choices": ("margin", "beta"),
        "help": "adaptive: stop at a lead of --margin votes (margin) or once a Beta posterior says the "
                "majority is settled with probability --confidence (beta, Adaptive-Consistency)"})  # fmt: skip
    confidence: float = field(default=0.95, metadata={"cli": True,
                              "help": "adaptive, beta rule: the posterior probability that stops"})  # fmt: skip
    # the presentation order of one-order judging: "given" (the first listed response is shown first, every
    # vote) or "shuffled" (each vote in its own seeded random order, as the RRM paper's evaluation code places
    # every vote; engine.judge.vote_swapped). With `swap` every vote is judged in both orders instead.
    order: str = field(default="given", metadata={
        "cli": True, "choices": ORDERS,
        "help": "one order per vote: given (as listed) or shuffled (a seeded random order per vote, as the "
                "RRM paper's code); --swap judges both orders instead"})  # fmt: skip
    # what a judgment that reaches its thinking budget (Sampling.max_tokens) without </think> becomes:
    # "cutoff" (the paper's): it ends there, truncated, without a verdict; "force": close_text is
    # appended and the model answers in answer_budget more tokens (docs/engine.md, "Budget forcing")
    budget_mode: str = field(default="cutoff", metadata={
        "cli": True, "choices": ("cutoff", "force"),
        "help": "a judgment that reaches --max-tokens: cutoff (truncated, no verdict) or force (close the "
                "thinking and let the model answer in --answer-budget tokens)"})  # fmt: skip
    answer_budget: int = field(default=64, metadata={"cli": True,
                               "help": "force: most new tokens of the answer after a forced close"})  # fmt: skip
    close_text: str = field(default="\n</think>", metadata={
        "cli": True, "metavar": "TEXT",
        "help": "force: the text appended to close the thinking, as the model writes it (\\n: newline)"})  # fmt: skip
    # adaptive escalation: a pair still undecided after a round gets a larger thinking budget for its next
    # round, Sampling.max_tokens doubled each round after the first, up to this many tokens (None: every
    # round at max_tokens); each judgment run above max_tokens records its budget (Judgment.escalated_to)
    escalate_to: int | None = field(default=None, metadata={
        "cli": True, "metavar": "TOKENS",
        "help": "adaptive: a pair still undecided after a round thinks longer in the next, --max-tokens doubled "
                "each round up to TOKENS (default: every round at --max-tokens)"})  # fmt: skip

    def __post_init__(self) -> None:
        if self.votes < 1:
            raise ValueError("votes must be at least 1")
        if self.budget is None:
            object.__setattr__(self, "budget", default_budget(self.votes))
        if self.budget < 1:
            raise ValueError("budget must be at least 1")
        if self.budget_mode not in BUDGET_MODES:
            raise ValueError(f"budget_mode must be one of {', '.join(BUDGET_MODES)}, not {self.budget_mode!r}")
        if self.answer_budget < 1:
            raise ValueError("answer_budget must be at least 1")
        if "</think>" not in self.close_text:
            raise ValueError(f"close_text must contain </think>, not {self.close_text!r}")
        if self.stopping not in STOPPING_RULES:
            raise ValueError(f"stopping must be one of {', '.join(STOPPING_RULES)}, not {self.stopping!r}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be above 0.5 and below 1, not {self.confidence!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {self.order!r}")
        if self.escalate_to is not None and (not self.adaptive or self.escalate_to < 1):
            raise ValueError("escalate_to raises the thinking budget of adaptive rounds: it needs adaptive and at "
                             f"least 1 token, not {self.escalate_to!r}")  # fmt: skip
        if self.order == "shuffled" and self.swap:
            raise ValueError("order 'shuffled' places each vote in one random order; swap judges both orders: "
                             "choose one")  # fmt: skip

    @property
    def forces(self) -> bool:
        return self.budget_mode == "force"

    def to_dict(self) -> dict[str, Any]:
        """The fields as stored with a run; the fields added after the first runs (budget forcing, the
        stopping rule, the order) only where they differ from their defaults, so an older run's compute
        (its columns, its default name's digest) reads as before them."""
        d = asdict(self)
        for name in _LATER_FIELDS:
            if d[name] == Compute.__dataclass_fields__[name].default:
                del d[name]
        return d


def check_escalation(compute: Compute, max_tokens: int) -> None:
    """ValueError when adaptive escalation would not raise the budget: ``escalate_to`` at or below the
    thinking budget ``max_tokens`` it escalates from (a JudgeSpec is never built so; the CLI asks first)."""
    cap = compute.escalate_to
    if cap is not None and cap <= max_tokens:
        raise ValueError(f"escalate_to ({cap} tokens) must be above the thinking budget max_tokens ({max_tokens}) "
                         "it escalates from")  # fmt: skip


_LATER_FIELDS = ("budget_mode", "answer_budget", "close_text", "stopping", "confidence", "order", "escalate_to")


BUDGET_MODES = ("cutoff", "force")
STOPPING_RULES = ("margin", "beta")


def default_budget(votes: int) -> int:
    """An adaptive pair's budget when none is given: two samples per vote, at least 8."""
    return max(8, 2 * int(votes))


@dataclass(frozen=True)
class JudgeSpec:
    """Everything that defines a run: what judged (format, backend, model) and how (sampling,
    compute, strategy). Two runs are the same run exactly when their specs are equal.

    How the judging is carried out (requests in flight, retries and their wait) is not part of
    it: it changes how fast, not what is judged. A run stores its spec in its columns
    (:meth:`run_columns`: ``template`` / ``template_version`` hold the judge format's name and
    version); :meth:`from_run` reads it back, and a resumed job judges with that spec.
    """

    judge: str  # the judge format's registry name (rrm_ui.protocol.FORMATS)
    judge_version: str
    backend: str
    model: str
    sampling: Sampling = field(default_factory=Sampling)
    compute: Compute = field(default_factory=Compute)
    strategy: str = "auto"

    def __post_init__(self) -> None:
        check_escalation(self.compute, self.sampling.max_tokens)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "judge_version": self.judge_version,
            "backend": self.backend,
            "model": self.model,
            "sampling": asdict(self.sampling),
            "compute": self.compute.to_dict(),
            "strategy": self.strategy,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeSpec:
        """The spec :meth:`to_dict` wrote; ValueError naming the field that is missing or wrong."""
        try:
            missing = [k for k in ("judge", "judge_version", "backend", "model") if not d.get(k)]
            if missing:
                raise ValueError(f"a judge spec needs {', '.join(missing)}")
            unknown = set(d) - {f for f in cls.__dataclass_fields__}
            if unknown:
                raise ValueError(f"unknown judge spec field(s): {', '.join(sorted(unknown))}")
            return cls(
                judge=str(d["judge"]),
                judge_version=str(d["judge_version"]),
                backend=str(d["backend"]),
                model=str(d["model"]),
                sampling=Sampling(**(d.get("sampling") or {})),
                compute=Compute(**(d.get("compute") or {})),
                strategy=str(d.get("strategy") or "auto"),
            )
        except TypeError as exc:  # an unknown sampling or compute key
            raise ValueError(f"judge spec: {exc}") from None

    def run_columns(self) -> dict[str, Any]:
        """The runs table's columns that hold this spec."""
        return {
            "backend": self.backend,
            "model": self.model,
            "template": self.judge,
            "template_version": self.judge_version,
            "strategy": self.strategy,
            "sampling": asdict(self.sampling),
            "compute": self.compute.to_dict(),
        }

    @classmethod
    def from_run(cls, run: RunInfo) -> JudgeSpec:
        """The spec a judge run was created with; ValueError for a run without one (an external run)."""
        if run.kind != "judge":
            raise ValueError(f"run {run.name!r} is an {run.kind} run: it has no judge spec")
        return cls.from_dict({
            "judge": run.template, "judge_version": run.template_version, "backend": run.backend,
            "model": run.model, "sampling": run.sampling, "compute": run.compute, "strategy": run.strategy,
        })  # fmt: skip


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

    def to_dict(self) -> dict[str, Any]:
        """The decision, the pairs, then every generated judgment (``comparisons``) with its trace.

        The one serialised form: ``rrm-ui judge --out`` writes it (with the run's spec beside it)
        and storage keeps its aggregate keys; :meth:`from_dict` reads it back.
        """
        return {
            "id": self.id,
            "strategy": self.strategy,
            "winner": self.winner,
            "ranking": list(self.ranking),
            "votes": {str(k): v for k, v in sorted(self.votes.items())},
            "position_consistent": self.position_consistent,
            "pairs": [p.to_dict() for p in self.pairs],
            "ratings": {name: {str(k): v for k, v in r.items()} for name, r in self.ratings.items()},
            "bracket": [list(rnd) for rnd in self.bracket],
            "comparisons": [j.to_dict() for p in self.pairs for j in p.judgments],
            "template": self.template,
            "template_version": self.template_version,
            "model": self.model,
            "backend": self.backend,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemResult:
        """The result :meth:`to_dict` wrote; each comparison goes back to the pair of its two responses,
        in the order written."""
        judgments = [Judgment.from_dict(c) for c in d.get("comparisons", ())]
        pairs = []
        for p in d["pairs"]:
            mine = tuple(jd for jd in judgments if {jd.a, jd.b} == {int(p["i"]), int(p["j"])})
            pairs.append(PairOutcome.from_dict(p, mine))
        return cls(
            id=str(d["id"]),
            strategy=d["strategy"],
            winner=d["winner"],
            ranking=tuple(int(x) for x in d["ranking"]),
            pairs=tuple(pairs),
            template=d["template"],
            template_version=d["template_version"],
            model=d["model"],
            backend=d["backend"],
            ratings={name: {int(k): float(v) for k, v in r.items()} for name, r in d.get("ratings", {}).items()},
            bracket=tuple(tuple(rnd) for rnd in d.get("bracket", ())),
        )


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
    note: str | None = None
    pair_i: int = 0  # the stored positions of the pair the label is about (i < j; A: pair_i is better)
    pair_j: int = 1


@dataclass(frozen=True)
class ImportedVerdict:
    """Another judge's verdict for a pair item, joined on the item id (becomes an external run)."""

    ext_id: str
    choice: Choice | None  # A, B or TIE; None: the judge gave no verdict (a code mapped to "none")
    ranking: tuple[int, ...] | None = None  # a list item: the judge's ranking, stored positions, best first;
    # () when it gave none (every pair then has no winner, like a run of rrm-ui's whose samples all failed)


@dataclass(frozen=True)
class Rejected:
    """A record an import skipped (``--skip-invalid``): where it is, why, and the record itself."""

    line: int | None  # 1-based line or row (None: the file as a whole)
    unit: str  # "line" or "row"
    field: str | None
    reason: str
    record: Any = None  # the record as read (JSON-serialisable), so it can be fixed and imported again

    def to_dict(self) -> dict[str, Any]:
        return {self.unit: self.line, "field": self.field, "reason": self.reason, "record": self.record}


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
    rejects: tuple[Rejected, ...] = ()  # records skipped with skip_invalid (none without it)


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
    origin: str | None = None  # "rejudge": an Explorer re-judge of items of ``parent_run_id``
    parent_run_id: int | None = None


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
    guideline_version: int | None = None  # the data set's guidelines the label was made under (None: none yet)


@dataclass(frozen=True)
class Adjudication:
    """A reviewer's final label of the pair (``pair_i``, ``pair_j``) of an item, with the reason.

    Append-only like labels: the latest per pair is the final label, the earlier ones its history.
    """

    item_db_id: int
    pair_i: int
    pair_j: int
    choice: Choice
    reason: str
    reviewer: str
    id: int | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Guidelines:
    """One version of a data set's labelling guidelines (Markdown); versions count 1, 2, ..."""

    dataset_id: int
    version: int
    text: str
    author: str | None
    created_at: datetime | None = None


# --- the app: accounts, the annotation queue, batch jobs -------------------------------------


class Role(enum.StrEnum):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"  # also adjudicates disagreements (admins do too)
    ADMIN = "admin"


@dataclass(frozen=True)
class Account:
    """An annotator account (no password hash leaves the storage layer)."""

    id: int
    name: str
    role: Role
    has_password: bool

    @property
    def can_review(self) -> bool:
        """Reviewers and admins adjudicate, and see every annotator's labels."""
        return self.role in (Role.REVIEWER, Role.ADMIN)


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
    worker: str | None = None  # None: the app; "rrm-ui judge on HOST, pid N": the CLI holds the run
    heartbeat_at: Any = None  # the CLI worker's last sign of life

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.active_s if self.active_s > 0 else None
