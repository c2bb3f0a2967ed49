"""Offline batches: a run's requests written for ``vllm run-batch``, its outputs read back as judgments.

A big run can be judged by vLLM's own batch runner instead of the app's live engine:

1. :func:`prepare` writes the requests of a run's items not yet judged as an OpenAI batch-input JSONL
   (one line per sample: ``custom_id``, ``method``, ``url``, ``body``);
2. ``vllm run-batch -i requests.jsonl -o outputs.jsonl --model MODEL`` judges them on its machine;
3. :func:`import_outputs` reads the batch-output JSONL and stores every item's judgments and result
   through the repository, as the live engine stores them.

Both steps run the engine itself (:func:`rrm_ui.engine.runner.judge_item` with the run's
:class:`~rrm_ui.engine.judge.Judge`, built by :func:`~rrm_ui.services.judging.build_judge`) over a
:class:`BatchBackend`: while preparing, the backend writes down the requests the engine makes (the
format's prompt, each order, each sample's seed) and answers nothing; while importing, it answers each
request with the sample texts of the output file, and the engine parses them with the format's official
parser and aggregates votes and orders into the item's result. So an offline judgment is made by the
same code as an online one: only the text comes from another process.

Limits: pairwise items with fixed votes (strategy ``pair``, or ``auto`` on two responses): knockout
and round robin need a round's results before the next round's requests, and adaptive compute a
round's votes before the next samples; budget forcing needs a backend that continues a sequence; a
judge format that builds its own raw prompt needs ``/v1/completions``, which vLLM 0.32's batch runner
does not serve (it answers only ``/v1/chat/completions`` of the generating endpoints).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from rrm_ui.backends.base import Backend, Event, ThinkSplitter
from rrm_ui.config import Settings
from rrm_ui.domain import GenRecord, GenRequest, Item, ItemResult, JudgeSpec, RunInfo, Status, StoredItem
from rrm_ui.engine.judge import Judge, pair_seed
from rrm_ui.engine.runner import judge_item, resolve_strategy
from rrm_ui.protocol import get_format
from rrm_ui.services.judging import build_judge, plan_run
from rrm_ui.storage import Repository

#: the backend name an offline run is stored under (its judgments are vLLM's, made by its batch runner)
BACKEND = "vllm-batch"
CHAT_URL = "/v1/chat/completions"
_PREFIX = "rrm-ui"


class OfflineError(ValueError):
    """A run that cannot go offline, or a batch file that cannot be read; ``problems`` lists every one."""

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        shown = [str(p) for p in problems[:20]]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(message + "".join(f"\n  {p}" for p in shown) + more)
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """What is wrong with one line of a batch file (``line`` None: the file as a whole, e.g. a line missing)."""

    file: str
    line: int | None
    field: str
    expected: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line is not None else self.file
        return f"{where}, field {self.field}: {self.expected}"


# --- custom ids -------------------------------------------------------------------------------


def custom_id(run: str, item_id: str, a: int, b: int, sample: int) -> str:
    """``rrm-ui:RUN:ITEM:A-B:SAMPLE`` (run and item percent-encoded, so any name round-trips)."""
    return f"{_PREFIX}:{quote(run, safe='')}:{quote(item_id, safe='')}:{a}-{b}:{sample}"


def parse_custom_id(text: str) -> tuple[str, str, int, int, int]:
    """``(run, item id, a, b, sample)`` of :func:`custom_id`; ValueError saying what was expected."""
    parts = text.split(":")
    expected = f"expected rrm-ui:RUN:ITEM:A-B:SAMPLE as prepare writes it, found {text[:120]!r}"
    if len(parts) != 5 or parts[0] != _PREFIX:
        raise ValueError(expected)
    first, dash, second = parts[3].partition("-")
    try:
        if not dash:
            raise ValueError
        a, b, k = int(first), int(second), int(parts[4])
    except ValueError:
        raise ValueError(expected) from None
    if min(a, b, k) < 0 or a == b:
        raise ValueError(expected)
    return unquote(parts[1]), unquote(parts[2]), a, b, k


# --- the backend the engine runs over ---------------------------------------------------------


@dataclass
class _Answer:
    """One output line's sample, read (the request's sampling and seed are added when it is replayed)."""

    line: int
    reasoning: str
    answer: str
    think_closed: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    finish_reason: str | None
    error: str | None = None


class BatchBackend(Backend):
    """The engine's backend for offline batches: it records requests, or answers them from a batch output.

    Items go through it one at a time (:attr:`item`). The engine names each request ``ITEM:A-B:N``
    (``Judge._sample``), which gives the order; the first sample number is the request's seed less the
    pair's seed (:func:`~rrm_ui.engine.judge.pair_seed`), or 0 unseeded (fixed votes ask for all of an
    order's samples at once).
    """

    name = BACKEND
    concurrency = 1024  # nothing waits for a slot: every answer is already there

    def __init__(self, model: str, run_seed: int | None) -> None:
        super().__init__(model)
        self.run_seed = run_seed
        self.item: Item | None = None
        self.answers: dict[tuple[int, int, int], _Answer] | None = None  # None: record
        self.requests: list[tuple[int, int, int, GenRequest]] = []  # (a, b, first sample, request)

    def _where(self, request: GenRequest) -> tuple[int, int, int]:
        assert self.item is not None
        head = f"{self.item.id}:"
        if not request.request_id.startswith(head):
            raise RuntimeError(f"request {request.request_id!r} is not of item {self.item.id!r}")
        order = request.request_id[len(head) :].rsplit(":", 1)[0]
        a, b = (int(x) for x in order.split("-"))
        first = 0
        if request.sampling.seed is not None and self.run_seed is not None:
            first = request.sampling.seed - pair_seed(self.run_seed, self.item.id, a, b)
        return a, b, first

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        a, b, first = self._where(request)
        if self.answers is None:
            self.requests.append((a, b, first, request))
            return  # nothing answered: the engine's records are thrown away
        s = request.sampling
        for k in range(request.n):
            got = self.answers.get((a, b, first + k))
            if got is None:
                continue  # checked before the replay: never the case
            yield GenRecord(
                sample=k, reasoning=got.reasoning, answer=got.answer, think_closed=got.think_closed,
                prompt_tokens=got.prompt_tokens, completion_tokens=got.completion_tokens,
                reasoning_tokens=got.reasoning_tokens, ttft_s=None, latency_s=0.0, finish_reason=got.finish_reason,
                model=self.model, backend=self.name, sampling=s, seed=None if s.seed is None else s.seed + k,
                error=got.error,
            )  # fmt: skip


async def _requests_of(judge: Judge, item: Item, strategy: str) -> list[tuple[int, int, int, GenRequest]]:
    backend = judge.backend
    assert isinstance(backend, BatchBackend)
    backend.item, backend.answers, backend.requests = item, None, []
    await judge_item(judge, item, strategy)
    return backend.requests


async def _expected(judge: Judge, item: Item, strategy: str) -> dict[tuple[int, int, int], dict[str, Any]]:
    """Every sample the engine asks for on ``item``: ``(a, b, sample)`` -> its batch request body."""
    out = {}
    for a, b, first, req in await _requests_of(judge, item, strategy):
        s = req.sampling
        for k in range(req.n):
            body: dict[str, Any] = {"model": judge.backend.model, "messages": list(req.messages),
                                    "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
                                    "n": 1}  # fmt: skip
            if s.seed is not None:
                body["seed"] = s.seed + k  # as the openai backend seeds sample k of a request
            out[(a, b, first + k)] = body
    return out


# --- what can go offline ----------------------------------------------------------------------


def check_offline(spec: JudgeSpec, items: list[StoredItem]) -> None:
    """OfflineError when the spec or an item needs what a single batch cannot give."""
    c = spec.compute
    if c.adaptive:
        raise OfflineError("adaptive compute cannot go into one batch: each round's samples depend on the votes "
                           "before them; use fixed --votes")  # fmt: skip
    if c.forces:
        raise OfflineError("--budget-mode force cannot go into a batch: vllm run-batch cannot continue a judgment "
                           "after a forced close; use --budget-mode cutoff")  # fmt: skip
    fmt = get_format(spec.judge)
    if not fmt.uses_chat_template:
        raise OfflineError(f"the judge format {fmt.name} builds its own prompt for /v1/completions, which "
                           f"vllm run-batch (0.32) does not serve (only {CHAT_URL}); judge it online "
                           "with --backend vllm")  # fmt: skip
    if fmt.scores:
        raise OfflineError(f"the judge format {fmt.name} scores each response with a reward model's head, which a "
                           f"vllm run-batch of {CHAT_URL} requests does not do; judge it online with --backend "
                           "transformers or vllm")  # fmt: skip
    bad = []
    for it in items:
        try:
            if resolve_strategy(spec.strategy, len(it.item.responses)) != "pair":
                bad.append(it.item.id)
        except ValueError:
            bad.append(it.item.id)
    if bad:
        raise OfflineError(f"offline batches judge pairs only (strategy pair): {len(bad)} item(s) have more than two "
                           f"responses (first: {', '.join(map(repr, bad[:5]))}); a knockout or round robin needs a "
                           "round's results before the next round's requests: judge them online")  # fmt: skip


def _judge(spec: JudgeSpec, settings: Settings) -> Judge:
    return build_judge(spec, BatchBackend(spec.model, spec.sampling.seed), settings)


# --- prepare ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    run: RunInfo
    created: bool
    path: Path
    requests: int
    items: int
    already_done: int


async def batch_lines(judge: Judge, run: str, items: Iterable[Item], strategy: str) -> AsyncIterator[dict[str, Any]]:
    """The batch-input lines of ``items``, item by item, each order, each sample."""
    for item in items:
        for (a, b, k), body in (await _expected(judge, item, strategy)).items():
            yield {"custom_id": custom_id(run, item.id, a, b, k), "method": "POST", "url": CHAT_URL, "body": body}


def prepare(repo: Repository, settings: Settings, dataset_id: int, run_name: str, spec: JudgeSpec,
            out: str | Path) -> Prepared:  # fmt: skip
    """Write the batch-input JSONL of the run's items not yet judged (the run is created if new)."""
    if spec.backend != BACKEND:
        raise OfflineError(f"an offline run's spec has the backend {BACKEND!r}, not {spec.backend!r}")
    judge = _judge(spec, settings)
    check_offline(spec, repo.items(dataset_id))
    plan = plan_run(repo, dataset_id, run_name, spec)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")

    async def write() -> int:
        n = 0
        with tmp.open("w", encoding="utf-8") as f:
            async for line in batch_lines(judge, plan.run.name, (it.item for it in plan.todo), spec.strategy):
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
        return n

    n = asyncio.run(write())  # one loop: the judge's request slots belong to it
    os.replace(tmp, path)
    return Prepared(plan.run, plan.created, path, n, len(plan.todo), plan.already_done)


# --- import -----------------------------------------------------------------------------------


def json_objects(path: str | Path, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each JSON-object line of a JSONL file; a line that is not one is added to
    ``problems`` (blank lines are skipped). OfflineError when the file cannot be read."""
    name = str(path)
    if not Path(path).is_file():
        raise OfflineError(f"cannot read {name}: no such file")
    with Path(path).open(encoding="utf-8", errors="replace") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(
                    Problem(name, line_no, "(line)", f"expected one JSON object, found invalid JSON ({exc})")
                )
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(name, line_no, "(line)", f"expected a JSON object, found {type(obj).__name__}"))
                continue
            yield line_no, obj


@dataclass(frozen=True)
class Imported:
    run: RunInfo
    stored: int  # items stored now
    already: int  # items of the file that already had a result in the run (an import run again)
    judgments: int
    error_judgments: int  # output lines with an error, stored as judgments with status error
    skipped_lines: tuple[Problem, ...] = ()  # --skip-invalid: every line left out, and why
    skipped_items: tuple[str, ...] = ()  # --skip-invalid: items left out (a line of theirs bad or missing)
    not_in_file: int = 0  # items of the run without a result and without lines in this file
    results: tuple[ItemResult, ...] = field(default=(), repr=False)


class _Bad(Exception):
    def __init__(self, where: str, expected: str) -> None:
        super().__init__(where, expected)
        self.where, self.expected = where, expected


def _int_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(where, f"expected a token count (an integer >= 0) or null, found {value!r}")
    return value


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)


def read_output(obj: dict[str, Any], model: str, line: int) -> _Answer:
    """One batch-output line as a sample; :class:`_Bad` names the field and what was expected.

    vLLM writes ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``; an
    ``error`` (or a status other than 200) is the sample's error. The text is read as the openai backend
    reads a server's: a server-side reasoning parser's ``reasoning`` (``reasoning_content``) and
    ``content``, else ``<think>...</think>`` inline in ``content``.
    """
    response = obj.get("response")
    if response is not None and not isinstance(response, dict):
        raise _Bad("response", f"expected an object or null, found {type(response).__name__}")
    status = (response or {}).get("status_code", 200)
    if obj.get("error") is not None or response is None or status != 200 or response.get("body") is None:
        why = _error_text(obj.get("error")) if obj.get("error") is not None else "no response body"
        return _Answer(line, "", "", False, None, None, None, "error", error=f"vllm run-batch: HTTP {status}: {why}")
    body = response["body"]
    if not isinstance(body, dict):
        raise _Bad("response.body", f"expected a chat.completion object, found {type(body).__name__}")
    if body.get("model") != model:
        raise _Bad("response.body.model", f"expected {model!r} (the run's model: run vllm run-batch with --model "
                                          f"{model}), found {body.get('model')!r}")  # fmt: skip
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise _Bad("response.body.choices", "expected a list of one choice (each request asks for n=1)")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _Bad("response.body.choices[0].message", "expected an object with the generated content")
    content = message.get("content")
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    for name, value in (("content", content), ("reasoning", reasoning)):
        if value is not None and not isinstance(value, str):
            raise _Bad(f"response.body.choices[0].message.{name}", f"expected text or null, found {value!r:.80}")
    finish = choices[0].get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise _Bad("response.body.choices[0].finish_reason", f"expected text or null, found {finish!r:.80}")
    usage = body.get("usage") or {}
    if not isinstance(usage, dict):
        raise _Bad("response.body.usage", "expected an object with prompt_tokens and completion_tokens")
    prompt_tokens = _int_or_none(usage.get("prompt_tokens"), "response.body.usage.prompt_tokens")
    tokens = _int_or_none(usage.get("completion_tokens"), "response.body.usage.completion_tokens")
    details = usage.get("completion_tokens_details") or {}
    counted = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if reasoning:  # split by the server, as SampleTracker.add_split takes it
        think, answer, closed = reasoning, content or "", bool(content)
    else:
        splitter = ThinkSplitter()
        think, answer = splitter.feed(content or "")
        think += splitter.flush()
        closed = splitter.closed
    # every token is reasoning while </think> never came; after it, only the server's count tells
    thinking = counted if isinstance(counted, int) and counted > 0 else (None if closed else tokens)
    return _Answer(line, think, answer, closed, prompt_tokens, tokens, thinking, finish)


def find_run(repo: Repository, run_name: str, dataset: str | None = None) -> RunInfo:
    """The judge run named ``run_name`` (in the data set ``dataset`` when given); OfflineError otherwise."""
    ds = None
    if dataset is not None:
        ds = repo.dataset(dataset)
        if ds is None:
            raise OfflineError(f"no data set named {dataset!r}")
    runs = [r for r in repo.runs(None if ds is None else ds.id) if r.name == run_name and r.kind == "judge"]
    if not runs:
        raise OfflineError(f"no judge run named {run_name!r}: create it with `rrm-ui offline prepare --run {run_name}`")
    if len(runs) > 1:
        raise OfflineError(f"{len(runs)} data sets have a run named {run_name!r}: say which with --dataset")
    return runs[0]


def import_outputs(
    repo: Repository,
    settings: Settings,
    run_name: str,
    path: str | Path,
    *,
    dataset: str | None = None,
    skip_invalid: bool = False,
) -> Imported:
    """Store the judgments of a ``vllm run-batch`` output file in the run (see the module's doc).

    All or nothing: any bad line (not JSON, a custom_id that is not one of this run's requests, a field
    that is not what vLLM writes, a custom_id twice) or an item with lines missing raises
    :class:`OfflineError` listing every problem, and nothing is stored; ``skip_invalid`` leaves those
    lines and items out and reports them. Items that already have a result in the run are left as they
    are, so importing a file again stores nothing twice.
    """
    run = find_run(repo, run_name, dataset)
    spec = JudgeSpec.from_run(run)
    if spec.backend != BACKEND:
        raise OfflineError(f"run {run.name!r} is judged by the {spec.backend} backend, not prepared for an offline "
                           "batch (`rrm-ui offline prepare`)")  # fmt: skip
    judge = _judge(spec, settings)
    backend = judge.backend
    assert isinstance(backend, BatchBackend)
    stored_items = repo.items(run.dataset_id)
    by_id = {it.item.id: it for it in stored_items}
    name = str(path)
    problems: list[Problem] = []
    got: dict[str, dict[tuple[int, int, int], _Answer]] = {}
    seen: dict[str, int] = {}
    for line_no, obj in json_objects(path, problems):
        cid = obj.get("custom_id")
        if not isinstance(cid, str):
            problems.append(Problem(name, line_no, "custom_id", "expected the request's custom_id (text)"))
            continue
        try:
            run_of, item_id, a, b, k = parse_custom_id(cid)
        except ValueError as exc:
            problems.append(Problem(name, line_no, "custom_id", str(exc)))
            continue
        if run_of != run.name:
            why = f"expected a request of run {run.name!r}, found one of run {run_of!r}"
            problems.append(Problem(name, line_no, "custom_id", why))
            continue
        if item_id not in by_id:
            why = f"expected an item of the run's data set, found unknown item {item_id!r}"
            problems.append(Problem(name, line_no, "custom_id", why))
            continue
        if cid in seen:
            problems.append(Problem(name, line_no, "custom_id", f"expected each custom_id once; {cid!r} is also "
                                                                f"on line {seen[cid]}"))  # fmt: skip
            continue
        seen[cid] = line_no
        answers = got.setdefault(item_id, {})  # an item with a bad line is checked for its missing ones too
        try:
            answer = read_output(obj, spec.model, line_no)
        except _Bad as bad:
            problems.append(Problem(name, line_no, bad.where, bad.expected))
            continue
        answers[(a, b, k)] = answer

    async def finish() -> Imported:  # one loop: the judge's request slots belong to it
        done = repo.judged_item_ids(run.id)
        complete: list[tuple[StoredItem, dict[tuple[int, int, int], _Answer]]] = []
        skipped_items: list[str] = []
        for it in stored_items:
            answers = got.get(it.item.id)
            if answers is None:
                continue
            try:
                check_offline(spec, [it])
            except OfflineError as exc:
                problems.append(Problem(name, min((x.line for x in answers.values()), default=None), "custom_id",
                                        str(exc)))  # fmt: skip
                skipped_items.append(it.item.id)
                continue
            expected = await _expected(judge, it.item, spec.strategy)
            orders = ", ".join(f"{x}-{y}" for x, y in sorted({(x, y) for x, y, _ in expected}))
            last = max(k for *_, k in expected)
            for key in sorted(set(answers) - set(expected)):
                a, b, k = key
                why = (f"expected one of the run's requests for item {it.item.id!r} (orders {orders}, samples "
                       f"0-{last}), found order {a}-{b} sample {k}")  # fmt: skip
                problems.append(Problem(name, answers.pop(key).line, "custom_id", why))
            missing = sorted(set(expected) - set(answers))
            if missing:
                ids = ", ".join(custom_id(run.name, it.item.id, *m) for m in missing[:4])
                why = (f"item {it.item.id!r}: expected a line for each of its {len(expected)} requests, "
                       f"{len(missing)} missing ({ids}{', ...' if len(missing) > 4 else ''})")  # fmt: skip
                problems.append(Problem(name, None, "custom_id", why))
                skipped_items.append(it.item.id)
                continue
            complete.append((it, answers))
        if problems and not skip_invalid:
            raise OfflineError(f"{name}: {len(problems)} problem(s); nothing was stored (--skip-invalid stores "
                               "the rest)", tuple(problems))  # fmt: skip
        stored = already = n_judgments = n_errors = 0
        results = []
        for it, answers in complete:
            if it.db_id in done:
                already += 1
                continue
            backend.item, backend.answers = it.item, answers
            result = await judge_item(judge, it.item, spec.strategy)
            if repo.save_first_result(run.id, it.db_id, result):
                stored += 1
                results.append(result)
                judgments = [j for p in result.pairs for j in p.judgments]
                n_judgments += len(judgments)
                n_errors += sum(j.status is Status.ERROR for j in judgments)
            else:
                already += 1
        untouched = sum(1 for it in stored_items if it.db_id not in done and it.item.id not in got)
        return Imported(run, stored, already, n_judgments, n_errors, tuple(problems), tuple(skipped_items), untouched,
                        tuple(results))  # fmt: skip

    return asyncio.run(finish())


__all__ = [
    "BACKEND",
    "CHAT_URL",
    "BatchBackend",
    "Imported",
    "OfflineError",
    "Prepared",
    "Problem",
    "batch_lines",
    "check_offline",
    "custom_id",
    "find_run",
    "import_outputs",
    "parse_custom_id",
    "prepare",
    "read_output",
]


# --- Ray Data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayJudged:
    path: Path  # the batch-output JSONL written (vllm run-batch's format: `rrm-ui offline import` reads it)
    requests: int
    answered: int  # lines with a completion
    errors: int  # lines with the server's error (stored as error judgments on import)
    failure: str | None = None  # why Ray stopped before every request was answered (the lines so far are kept)


def chat_url(url: str) -> str:
    """The chat-completions URL of a server or router given as ``http://host:port``, ``.../v1`` or the full URL."""
    url = url.rstrip("/")
    if url.endswith(CHAT_URL):
        return url
    return url + (CHAT_URL.removeprefix("/v1") if url.endswith("/v1") else CHAT_URL)


def read_requests(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a batch-input JSONL :func:`prepare` wrote; OfflineError listing every bad line."""
    name, rows, problems = str(path), [], []
    for line_no, obj in json_objects(path, problems):
        try:
            parse_custom_id(obj.get("custom_id") if isinstance(obj.get("custom_id"), str) else "")
        except ValueError as exc:
            problems.append(Problem(name, line_no, "custom_id", str(exc)))
            continue
        if obj.get("url") != CHAT_URL:
            problems.append(Problem(name, line_no, "url", f"expected {CHAT_URL!r}, found {obj.get('url')!r}"))
            continue
        if not isinstance(obj.get("body"), dict):
            problems.append(Problem(name, line_no, "body", "expected the chat-completions request (an object)"))
            continue
        rows.append({"custom_id": obj["custom_id"], "body": json.dumps(obj["body"], ensure_ascii=False)})
    if problems:
        raise OfflineError(f"{name} is not a batch-input file of `rrm-ui offline prepare`:", tuple(problems))
    return rows


def output_line(custom_id_: str, response: Any, k: int) -> dict[str, Any]:
    """One batch-output line in ``vllm run-batch``'s shape from a server's JSON answer: a chat.completion is
    the body (status 200); anything else (vLLM's ``{"object": "error", "message": ...}``) is the line's error."""
    if isinstance(response, dict) and isinstance(response.get("choices"), list):
        ok = {"status_code": 200, "request_id": f"rrm-ui-ray-{k}", "body": response}
        return {"id": f"rrm-ui-ray-{k}", "custom_id": custom_id_, "response": ok, "error": None}
    message = response.get("message") if isinstance(response, dict) else None
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        message = response["error"].get("message", message)
    code = response.get("code", 400) if isinstance(response, dict) else 400
    return {"id": f"rrm-ui-ray-{k}", "custom_id": custom_id_, "response": {"status_code": code, "body": None},
            "error": {"message": str(message or json.dumps(response, ensure_ascii=False)[:500])}}  # fmt: skip


def judge_on_ray(
    requests: str | Path,
    out: str | Path,
    url: str,
    *,
    concurrency: int = 1,
    batch_size: int = 16,
    max_retries: int = 3,
    headers: dict[str, str] | None = None,
    address: str | None = None,
) -> RayJudged:
    """Send a prepared batch through Ray Data's HTTP request processor (``ray.data.llm``) to an
    OpenAI-compatible server or router at ``url``, and write the answers as ``vllm run-batch`` writes them.

    ``concurrency`` Ray actors each keep ``batch_size`` requests in flight (the processor's own
    ``concurrency`` and ``batch_size``); a server's 429 / 5xx are retried ``max_retries`` times with a
    growing wait. Lines are written as they arrive (to ``out``, appended to by no one else); if Ray stops
    (a request that failed past its retries), the answered lines stay and :attr:`RayJudged.failure` says why:
    import them, prepare again (only items without a result are written) and send the rest. ``address``
    joins a running Ray cluster (``ray://...`` or ``auto``); without it Ray starts on this machine.
    """
    rows = read_requests(requests)
    try:
        import ray
        from ray.data.llm import HttpRequestProcessorConfig, build_processor
    except ImportError as exc:
        raise OfflineError(f"Ray Data is not installed ({exc}): pip install 'rrm-ui[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    config = HttpRequestProcessorConfig(url=chat_url(url), headers=headers or None, concurrency=concurrency,
                                        batch_size=batch_size, max_retries=max_retries)  # fmt: skip
    processor = build_processor(
        config,
        preprocess=lambda row: {"payload": json.loads(row["body"]), "custom_id": row["custom_id"]},
        # the answer as text: Arrow would otherwise infer one schema per block from answers that differ
        postprocess=lambda row: {
            "custom_id": row["custom_id"],
            "response": json.dumps(row["http_response"], ensure_ascii=False),
        },  # fmt: skip
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    answered = errors = 0
    failure = None
    with path.open("w", encoding="utf-8") as f:
        try:
            for k, row in enumerate(processor(ray.data.from_items(rows)).iter_rows()):
                line = output_line(row["custom_id"], json.loads(row["response"]), k)
                errors += line["error"] is not None
                answered += line["error"] is None
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
                f.flush()
        except Exception as exc:  # noqa: BLE001 - Ray's failure is reported with what was answered
            failure = f"{type(exc).__name__}: {str(exc)[:1000]}"
    return RayJudged(path, len(rows), answered, errors, failure)
