"""Import preference data sets (pairs and lists of responses, with gold labels) from files.

Importers are pure: :func:`read_dataset` reads one file (see :mod:`rrm_ui.io.readers` for
JSONL, JSON, CSV/TSV, Parquet and gzip) and returns an :class:`ImportedDataset`; it never
touches a database. The whole file is validated first: either every record is usable or
:class:`ImportFileError` names the first problem (file, line or row, field, what was
found, what was expected).

The format is detected from the fields of the first record (see :data:`FORMATS`); every
later record must have the same fields. Other layouts need a :class:`Mapping` (or one of
the :data:`PRESETS`). Gold labels become ``gold_tiers`` (lower is better); fields that
no format or mapping uses are kept in the item's ``metadata`` (made JSON-serialisable:
non-finite numbers become null, other non-JSON values their ``str``).

Decisions the importer takes on the user's behalf (all but the last are summarised in
``ImportedDataset.notes``):

* ``preference`` and ``trl-conversational`` data list the better (chosen) response first.
  Showing it first every time would bias a judge, so each pair's presentation order is
  drawn pseudo-randomly from ``shuffle_seed`` and the item's id (its query when it has
  none); ``gold_tiers`` says which response is the chosen one. The same seed gives the
  same order.
* Records without an id are named ``row-<N>``, N their line (JSONL) or row number.
* ``trl-conversational`` records without a ``prompt`` field take as prompt the longest run
  of leading messages that chosen and rejected share (as TRL does); the response is the
  rest (assistant messages only, their contents joined by a blank line).
* Multi-turn prompts are flattened into one query of role-prefixed turns
  (``"User: ...\\n\\nAssistant: ...\\n\\nUser: ..."``); the item's metadata records
  ``flattened = "role-prefixed"`` and ``turns = N``.
* Gold ``tie`` and ``both_bad`` both become equal tiers ``(0, 0)``; metadata
  ``gold_choice`` keeps which one it was. A null or empty label means "no gold label".

A/B in annotator columns and in an external verdict file refer to the order of the
source record (chosen first for preference data); where the importer swapped a pair they
are swapped with it, so they keep pointing at the same response text.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrm_ui.domain import Choice, ImportedDataset, ImportedItem, ImportedLabel, ImportedVerdict
from rrm_ui.io.readers import FILE_TYPES, ImportFileError, Record, describe, mb, open_records

__all__ = [
    "FORMATS",
    "PRESETS",
    "ExternalVerdicts",
    "ImportFileError",
    "Mapping",
    "default_name",
    "detect_format",
    "parse_label_values",
    "parse_mapping",
    "read_dataset",
]

_CHOICE_NAMES = {c.value.lower(): c for c in Choice}
_FLIP = {Choice.A: Choice.B, Choice.B: Choice.A}
_MAP_KEYS = ("query", "responses", "label", "id", "subset")


@dataclass(frozen=True)
class Mapping:
    """Which fields of a record hold what, for files whose format is not detected.

    ``query``: one field, or several joined with a blank line (empty parts skipped).
    ``responses``: two or more fields, one response each, or ONE field holding a list.
    ``label`` is decoded with ``label_values`` (required with it) and needs pair items.
    A mapping with neither ``query`` nor ``responses`` only says how to decode the
    ``label`` field of a detected ``pairwise`` file (what ``--labels`` alone gives).
    """

    query: tuple[str, ...]
    responses: tuple[str, ...]
    label: str | None = None
    label_values: dict[str, Choice] | None = None
    id: str | None = None
    subset: str | None = None

    def __post_init__(self) -> None:
        if bool(self.query) != bool(self.responses):
            raise ValueError("a mapping needs both query and responses fields (or neither, to decode labels only)")
        if self.label is not None and not self.label_values:
            raise ValueError(f"the label field {self.label!r} needs label values (e.g. --labels 1=A,2=B)")
        if self.label_values and self.label is None:
            raise ValueError("label values need a label field")
        if not self.query and self.label is None:
            raise ValueError("an empty mapping: give query and responses fields, or a label field with values")

    @property
    def labels_only(self) -> bool:
        return not self.query


PRESETS: dict[str, Mapping] = {
    # princeton-nlp/LLMBar: {input, output_1, output_2, label}; label 1 or 2 names the better output.
    "llmbar": Mapping(("input",), ("output_1", "output_2"), "label", {"1": Choice.A, "2": Choice.B}),
    # tatsu-lab/alpaca_farm preference sets: {instruction, input, output_1, output_2, preference 1|2}.
    "alpaca-farm": Mapping(
        ("instruction", "input"), ("output_1", "output_2"), "preference", {"1": Choice.A, "2": Choice.B}
    ),
    # PKU-Alignment/PKU-SafeRLHF: {prompt, response_0, response_1, better_response_id 0|1, ...}.
    "pku-saferlhf": Mapping(
        ("prompt",), ("response_0", "response_1"), "better_response_id", {"0": Choice.A, "1": Choice.B}
    ),
}

# Detected formats and the fields that identify them. Every one also reads an optional ``id``
# (string or integer) and ``subset`` (string); other fields go into the item's metadata.
FORMATS: dict[str, str] = {
    "listwise": "query (or prompt) + responses (list of 2+ strings); optional ranking (indices, best first)",
    "rmbench": "prompt + chosen + rejected, each a list of strings (RM-Bench)",
    "pairwise": "query + response_a + response_b; optional label (A, B, tie, both_bad; other codes need --labels)",
    "preference": "prompt + chosen + rejected strings (RewardBench, TRL standard form)",
    "trl-conversational": "chosen + rejected lists of {role, content} messages; optional prompt (string or messages)",
}


@dataclass(frozen=True)
class ExternalVerdicts:
    """Another judge's verdicts, in a file of their own, joined to the items on an id field.

    ``values`` decodes the verdict field (to A, B or tie); a null or empty verdict is skipped.
    The verdicts become the external run named ``run``.
    """

    path: str | Path
    run: str
    id_field: str = "id"
    verdict_field: str = "verdict"
    values: dict[str, Choice] = field(default_factory=lambda: {"A": Choice.A, "B": Choice.B, "tie": Choice.TIE})

    def __post_init__(self) -> None:
        if not self.run.strip():
            raise ValueError("an external run needs a name")
        if Choice.BOTH_BAD in self.values.values():
            raise ValueError("external verdicts are A, B or tie; both_bad is a human label only")


def parse_label_values(spec: str) -> dict[str, Choice]:
    """``"1=A,2=B,0=tie,3=both_bad"`` -> ``{"1": Choice.A, ...}`` (choice names case-insensitive)."""
    out: dict[str, Choice] = {}
    for part in spec.split(","):
        code, eq, name = part.partition("=")
        code, name = code.strip(), name.strip()
        if not eq or not code or not name:
            raise ValueError(f"label values {spec!r}: expected CODE=CHOICE pairs like 1=A,2=B, found {part.strip()!r}")
        if name.lower() not in _CHOICE_NAMES:
            raise ValueError(f"label values {spec!r}: {name!r} is not a choice; expected A, B, tie or both_bad")
        if code in out:
            raise ValueError(f"label values {spec!r}: the code {code!r} is given twice")
        out[code] = _CHOICE_NAMES[name.lower()]
    return out


def parse_mapping(pairs: list[str], labels: str | None) -> Mapping:
    """A :class:`Mapping` from CLI ``--map KEY=FIELDS`` pairs and ``--labels CODE=CHOICE,...``.

    Keys: query (fields joined by ``+``), responses (fields joined by ``,``), label, id,
    subset. ``--labels`` without ``--map label=...`` decodes the field ``label``; ``--labels``
    alone (no ``--map``) decodes the label of a detected pairwise file.
    """
    given: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not value:
            raise ValueError(f"--map {pair!r}: expected KEY=FIELD, e.g. query=instruction+input")
        if key not in _MAP_KEYS:
            raise ValueError(f"--map {pair!r}: unknown key {key!r}; expected one of {', '.join(_MAP_KEYS)}")
        if key in given:
            raise ValueError(f"--map {key}=... is given twice")
        given[key] = value
    values = parse_label_values(labels) if labels is not None else None
    if "label" in given and values is None:
        raise ValueError(
            f"--map label={given['label']} needs --labels (e.g. --labels 1=A,2=B); codes are never guessed"
        )
    label = given.get("label", "label" if values is not None else None)
    if not given.keys() & {"query", "responses"} and given.keys() - {"label"}:
        raise ValueError("--map needs query=FIELD[+FIELD] and responses=FIELD,FIELD[,...]")

    def split(key: str, sep: str) -> tuple[str, ...]:
        return tuple(f.strip() for f in given.get(key, "").split(sep) if f.strip())

    query = tuple(f.strip() for f in given.get("query", "").replace(",", "+").split("+") if f.strip())
    try:
        return Mapping(query, split("responses", ","), label, values, given.get("id"), given.get("subset"))
    except ValueError as e:
        raise ValueError(f"--map: {e}") from None


def detect_format(
    first_record: dict[str, Any], *, path: str | Path = "<record>", line: int | None = None, unit: str = "line"
) -> str:
    """The name of the detected format (a key of :data:`FORMATS`) of a record."""
    r = first_record
    if "responses" in r and ("query" in r or "prompt" in r):
        return "listwise"
    if "query" in r and "response_a" in r and "response_b" in r:
        return "pairwise"
    if "chosen" in r and "rejected" in r:
        chosen, rejected = r["chosen"], r["rejected"]
        if isinstance(chosen, list) and isinstance(rejected, list):
            if any(isinstance(m, dict) for m in chosen + rejected):
                return "trl-conversational"
            if "prompt" in r:
                return "rmbench"
        if isinstance(chosen, str) and "prompt" in r:
            return "preference"
    known = " | ".join(f"{k}: {v}" for k, v in FORMATS.items())
    hint = ""
    if isinstance(r.get("chosen"), str) and "prompt" not in r:
        hint = " (chosen/rejected strings without a prompt field, the prompt inside the text, are not supported)"
    raise ImportFileError(
        path,
        line,
        None,
        f"unknown format{hint}: found the fields {', '.join(map(repr, r)) or 'none'}; expected the fields of a known "
        f"format ({known}), or a field mapping (--map, or a preset: {', '.join(PRESETS)})",
        unit,
    )


# --- reading one record -------------------------------------------------------------------------


@dataclass
class _Parsed:
    query: str
    responses: tuple[str, ...]
    tiers: tuple[int, ...] | None = None
    gold: Choice | None = None
    swappable: bool = False  # chosen first in the source: the presentation order is drawn
    turns: int | None = None  # set when a multi-turn prompt was flattened
    implicit_prompt: bool = False


class _Row:
    """One record being read: its fields, which of them were used, and errors that point at it."""

    __slots__ = ("data", "fmt", "limit", "path", "pos", "unit", "used")

    def __init__(self, path: Path, unit: str, rec: Record, fmt: str, limit: int) -> None:
        self.path, self.unit, self.pos, self.data, self.fmt, self.limit = path, unit, rec.pos, rec.data, fmt, limit
        self.used: set[str] = set()

    def error(self, fld: str | None, detail: str) -> ImportFileError:
        return ImportFileError(self.path, self.pos, fld, detail, self.unit)

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def require(self, key: str, expected: str) -> Any:
        if key not in self.data:
            raise self.error(
                key, f"expected {expected}, found the field missing (records of this {self.fmt} file need it)"
            )
        self.used.add(key)
        return self.data[key]

    def text(self, key: str, value: Any) -> str:
        if isinstance(value, str) and value.strip():
            return self.no_nul(key, value)
        kind = "a non-empty string" if isinstance(value, str) else "a string"
        raise self.error(key, f"expected {kind}, found {describe(value)}")

    def no_nul(self, key: str, value: str) -> str:
        """``value``, unless it holds a NUL character (JSON's \\u0000), which text columns cannot store."""
        if "\x00" in value:
            at = value.index("\x00") + 1
            raise self.error(key, f"expected text without NUL characters, found a NUL (\\u0000) at character {at}")
        return value

    def response(self, key: str, value: Any) -> str:
        text = self.text(key, value)
        if len(text) * 4 > self.limit and (n := len(text.encode("utf-8"))) > self.limit:
            raise self.error(
                key, f"response too large: it is {mb(n)} ({n:,} bytes), over the limit of {mb(self.limit)}"
            )
        return text

    def responses(self, key: str, value: Any, least: int) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) < least:
            raise self.error(key, f"expected a list of at least {least} strings, found {describe(value)}")
        return tuple(self.response(f"{key}[{k}]", v) for k, v in enumerate(value))

    def ext_id(self, key: str) -> str | None:
        value = self.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, str) and value.strip():
            return self.no_nul(key, value)
        raise self.error(key, f"expected a string or an integer, found {describe(value)}")

    def subset(self, key: str) -> str | None:
        value = self.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return self.no_nul(key, value)
        raise self.error(key, f"expected a string, found {describe(value)}")

    def label_key(self, key: str) -> str | None:
        """The label value as a lookup key: None when empty, integral numbers without a fraction."""
        value = self.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else repr(value)
        if isinstance(value, str):
            return value.strip() or None
        raise self.error(key, f"expected a label (a string or a number), found {describe(value)}")

    def lookup(self, key: str, code: str, values: dict[str, Choice]) -> Choice:
        if code in values:
            return values[code]
        for k, v in values.items():
            if k.lower() == code.lower():
                return v
        spec = ",".join(f"{k}={v.value}" for k, v in values.items())
        raise self.error(key, f"value {code!r} is not in the label mapping {spec}; expected one of {', '.join(values)}")

    def extras(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in self.data.items() if k not in self.used}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _pair_tiers(choice: Choice) -> tuple[int, int]:
    return {Choice.A: (0, 1), Choice.B: (1, 0)}.get(choice, (0, 0))


def _pair_label(row: _Row, key: str, n: int, values: dict[str, Choice] | None) -> Choice | None:
    code = row.label_key(key)
    if code is None:
        return None
    if values is not None:
        choice = row.lookup(key, code, values)
    elif code.lower() in _CHOICE_NAMES:
        choice = _CHOICE_NAMES[code.lower()]
    elif code.lstrip("-").replace(".", "", 1).isdigit():
        raise row.error(
            key,
            f"value {code!r} is a numeric code; label codes are never guessed: pass --labels to say what each "
            "code means (e.g. --labels 1=A,2=B)",
        )
    else:
        raise row.error(key, f"value {code!r} is not a label: expected A, B, tie or both_bad (case-insensitive)")
    if n != 2:
        raise row.error(key, f"expected a pair for a label, found {n} responses")
    return choice


def _listwise(row: _Row, _: Mapping | None) -> _Parsed:
    qkey = "query" if "query" in row.data else "prompt"
    query = row.text(qkey, row.require(qkey, "a non-empty string"))
    responses = row.responses("responses", row.require("responses", "a list of at least 2 strings"), 2)
    ranking = row.get("ranking")
    if ranking is None:
        return _Parsed(query, responses)
    n = len(responses)
    if (
        not isinstance(ranking, list)
        or any(not isinstance(i, int) or isinstance(i, bool) for i in ranking)
        or sorted(ranking) != list(range(n))
    ):
        raise row.error(
            "ranking", f"expected each response index 0..{n - 1} once, best first, found {describe(ranking)}"
        )
    tiers = [0] * n
    for position, index in enumerate(ranking):
        tiers[index] = position
    return _Parsed(query, responses, tuple(tiers))


def _rmbench(row: _Row, _: Mapping | None) -> _Parsed:
    query = row.text("prompt", row.require("prompt", "a non-empty string"))
    chosen = row.responses("chosen", row.require("chosen", "a list of strings"), 1)
    rejected = row.responses("rejected", row.require("rejected", "a list of strings"), 1)
    return _Parsed(query, chosen + rejected, (0,) * len(chosen) + (1,) * len(rejected))


def _pairwise(row: _Row, labels: Mapping | None) -> _Parsed:
    query = row.text("query", row.require("query", "a non-empty string"))
    pair = tuple(row.response(k, row.require(k, "a non-empty string")) for k in ("response_a", "response_b"))
    key, values = (labels.label or "label", labels.label_values) if labels else ("label", None)
    gold = _pair_label(row, key, 2, values) if key in row.data else None
    return _Parsed(query, pair, _pair_tiers(gold) if gold else None, gold)


def _preference(row: _Row, _: Mapping | None) -> _Parsed:
    query = row.text("prompt", row.require("prompt", "a non-empty string"))
    chosen = row.response("chosen", row.require("chosen", "a non-empty string"))
    rejected = row.response("rejected", row.require("rejected", "a non-empty string"))
    return _Parsed(query, (chosen, rejected), (0, 1), Choice.A, swappable=True)


def _messages(row: _Row, key: str, value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        raise row.error(key, f"expected a non-empty list of {{role, content}} messages, found {describe(value)}")
    out = []
    for k, m in enumerate(value):
        if not isinstance(m, dict):
            raise row.error(f"{key}[{k}]", f"expected a message {{role, content}}, found {describe(m)}")
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not role.strip():
            raise row.error(f"{key}[{k}].role", f"expected a non-empty string, found {describe(role)}")
        if not isinstance(content, str):
            raise row.error(f"{key}[{k}].content", f"expected a string, found {describe(content)}")
        out.append((role, row.no_nul(f"{key}[{k}].content", content)))
    return out


def _reply(row: _Row, key: str, messages: list[tuple[str, str]], skip: int) -> str:
    if not messages:
        raise row.error(key, "expected assistant message(s) after the prompt, found none")
    for k, (role, _) in enumerate(messages, start=skip):
        if role.lower() != "assistant":
            raise row.error(f"{key}[{k}].role", f"expected 'assistant' after the prompt, found {role!r}")
    return row.response(key, "\n\n".join(content for _, content in messages))


def _trl(row: _Row, _: Mapping | None) -> _Parsed:
    chosen = _messages(row, "chosen", row.require("chosen", "a list of messages"))
    rejected = _messages(row, "rejected", row.require("rejected", "a list of messages"))
    explicit = row.get("prompt")
    if explicit is not None:
        if isinstance(explicit, str):
            prompt = [("user", row.text("prompt", explicit))]
        else:
            prompt = _messages(row, "prompt", explicit)
        # some data sets repeat the prompt at the start of chosen and rejected: drop it there
        c_skip = len(prompt) if chosen[: len(prompt)] == prompt else 0
        r_skip = len(prompt) if rejected[: len(prompt)] == prompt else 0
    else:
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise row.error(
                "chosen",
                "expected a 'prompt' field or chosen and rejected starting with the same messages, found neither",
            )
        prompt, c_skip, r_skip = chosen[:shared], shared, shared
    reply_c = _reply(row, "chosen", chosen[c_skip:], c_skip)
    reply_r = _reply(row, "rejected", rejected[r_skip:], r_skip)
    turns = [(role, content) for role, content in prompt if content.strip()]
    if not turns:
        raise row.error("prompt" if explicit is not None else "chosen", "expected a non-empty prompt, found none")
    if len(turns) == 1 and turns[0][0] == "user":
        query, flattened = turns[0][1], None
    else:
        query, flattened = "\n\n".join(f"{role.capitalize()}: {content}" for role, content in turns), len(turns)
    return _Parsed(query, (reply_c, reply_r), (0, 1), Choice.A, True, flattened, explicit is None)


def _mapped(row: _Row, m: Mapping | None) -> _Parsed:
    assert m is not None
    if len(m.query) == 1:
        query = row.text(m.query[0], row.require(m.query[0], "a non-empty string"))
    else:
        parts = []
        for key in m.query:
            value = row.require(key, "a string")
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            parts.append(row.text(key, value))
        if not parts:
            raise row.error(m.query[0], f"expected text in at least one of the fields {', '.join(m.query)}, found none")
        query = "\n\n".join(parts)
    if len(m.responses) == 1:
        responses = row.responses(m.responses[0], row.require(m.responses[0], "a list of at least 2 strings"), 2)
    else:
        responses = tuple(row.response(k, row.require(k, "a non-empty string")) for k in m.responses)
    gold = None
    if m.label is not None:
        row.require(m.label, "a label")
        gold = _pair_label(row, m.label, len(responses), m.label_values)
    return _Parsed(query, responses, _pair_tiers(gold) if gold else None, gold)


_CONVERTERS: dict[str, Callable[[_Row, Mapping | None], _Parsed]] = {
    "listwise": _listwise,
    "rmbench": _rmbench,
    "pairwise": _pairwise,
    "preference": _preference,
    "trl-conversational": _trl,
}


def _swap(seed: int, key: str) -> bool:
    """The deterministic pseudo-random draw: show the chosen response second?"""
    return bool(hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()[0] & 1)


def default_name(path: str | Path) -> str:
    """The data set name of a file: its name without compression and file-type extensions."""
    path = Path(path)
    name = path.name.removesuffix(".gz").removesuffix(".GZ")
    stem, dot, ext = name.rpartition(".")
    return stem if dot and stem and f".{ext.lower()}" in FILE_TYPES else name


# --- the importer ---------------------------------------------------------------------------


def read_dataset(
    path: str | Path,
    *,
    name: str | None = None,
    mapping: Mapping | None = None,
    annotator_columns: dict[str, str] | None = None,
    annotator_labels: dict[str, Choice] | None = None,
    external: ExternalVerdicts | tuple[Any, ...] | None = None,
    max_bytes: int = 512 * 1024**2,
    max_response_bytes: int = 1024**2,
    shuffle_seed: int = 0,
) -> ImportedDataset:
    """Read and validate every record of ``path``; raise :class:`ImportFileError` on the first problem.

    ``name`` defaults to the file name without its extensions. ``annotator_columns`` maps
    column -> annotator name; their values are decoded with ``annotator_labels`` (a null or
    empty value: that annotator did not label the row). ``external`` joins another judge's
    verdicts (an :class:`ExternalVerdicts`, or the tuple of its fields). Files over
    ``max_bytes`` and responses over ``max_response_bytes`` are refused.
    """
    path = Path(path)
    if isinstance(external, tuple):  # (path, run, id_field, verdict_field, values) is accepted too
        external = ExternalVerdicts(*external)
    annotator_columns = annotator_columns or {}
    if annotator_columns and not annotator_labels:
        raise ValueError("annotator columns need annotator label values (e.g. 1=A,2=B)")
    items: list[ImportedItem] = []
    labels: list[ImportedLabel] = []
    first_seen: dict[str, int] = {}
    swapped: set[str] = set()
    fmt = ""
    shuffled = generated = implicit = flattened = 0
    with open_records(path, max_bytes) as source:
        convert: Callable[[_Row, Mapping | None], _Parsed] = _mapped
        for rec in source.records:
            if not fmt:
                if mapping is not None and not mapping.labels_only:
                    fmt = next((k for k, v in PRESETS.items() if v == mapping), "mapping")
                else:
                    fmt = detect_format(rec.data, path=path, line=rec.pos, unit=source.unit)
                    if mapping is not None and fmt != "pairwise":
                        raise ImportFileError(
                            path,
                            None,
                            None,
                            f"--labels without --map applies to pairwise files; this one is {fmt}",
                        )
                    convert = _CONVERTERS[fmt]
            row = _Row(path, source.unit, rec, fmt, max_response_bytes)
            if mapping is not None and mapping.id:
                row.require(mapping.id, "an id (a string or an integer)")
            id_key = mapping.id if mapping is not None and not mapping.labels_only else "id"
            given_id = row.ext_id(id_key) if id_key else None
            subset_key = mapping.subset if mapping is not None and not mapping.labels_only else "subset"
            subset = row.subset(subset_key) if subset_key else None
            parsed = convert(row, mapping)
            ext_id = given_id if given_id is not None else f"row-{rec.pos}"
            generated += given_id is None
            if ext_id in first_seen:
                raise row.error(
                    id_key or "id",
                    f"expected a unique id, found {ext_id!r} twice: {source.unit} {first_seen[ext_id]} "
                    f"and {source.unit} {rec.pos}",
                )
            first_seen[ext_id] = rec.pos
            responses, tiers = parsed.responses, parsed.tiers
            swap = parsed.swappable and _swap(shuffle_seed, given_id if given_id is not None else parsed.query)
            if parsed.swappable:
                shuffled += 1
            if swap:
                swapped.add(ext_id)
                responses, tiers = responses[::-1], (tiers[::-1] if tiers else None)
            for column, annotator in annotator_columns.items():
                row.require(column, "an annotator's label (or an empty value)")
                code = row.label_key(column)
                if code is None:
                    continue
                assert annotator_labels is not None
                choice = row.lookup(column, code, annotator_labels)
                if len(responses) != 2:
                    raise row.error(column, f"expected a pair for an annotator label, found {len(responses)} responses")
                labels.append(ImportedLabel(ext_id, annotator, _FLIP.get(choice, choice) if swap else choice))
            metadata = row.extras()
            if parsed.gold in (Choice.TIE, Choice.BOTH_BAD):
                metadata["gold_choice"] = parsed.gold.value
            if parsed.turns is not None:
                metadata.update(flattened="role-prefixed", turns=parsed.turns)
                flattened += 1
            implicit += parsed.implicit_prompt
            items.append(ImportedItem(ext_id, parsed.query, responses, rec.pos, subset, tiers, metadata))
        unit = source.unit
    if not items:
        raise ImportFileError(path, None, None, "empty file: expected at least one record, found none")
    verdicts = _read_external(external, items, swapped, max_bytes) if external else ()
    notes = []
    if shuffled:
        notes.append(
            f"presentation order shuffled with seed {shuffle_seed}: a pseudo-random draw from the seed and each "
            f"item's id (or its prompt) put the chosen response first in {shuffled - len(swapped)} of {shuffled} "
            "pairs; gold_tiers mark the chosen one"
        )
    if generated:
        notes.append(f"{generated} record(s) had no id and are named row-<N> after their {unit}")
    if implicit:
        notes.append(f"{implicit} record(s) had no prompt field: the prompt is the messages chosen and rejected share")
    if flattened:
        notes.append(f"{flattened} multi-turn prompt(s) flattened into role-prefixed turns (metadata 'turns')")
    return ImportedDataset(
        name=name or default_name(path),
        source=str(Path(path).resolve()),
        format=fmt,
        items=tuple(items),
        labels=tuple(labels),
        external_run=external.run if external else None,
        external=verdicts,
        notes=tuple(notes),
    )


def _read_external(
    ext: ExternalVerdicts, items: list[ImportedItem], swapped: set[str], max_bytes: int
) -> tuple[ImportedVerdict, ...]:
    """Read an external verdict file; every id must name an imported pair item."""
    path = Path(ext.path)
    sizes = {item.ext_id: len(item.responses) for item in items}
    verdicts: list[ImportedVerdict] = []
    first_seen: dict[str, int] = {}
    with open_records(path, max_bytes) as source:
        for rec in source.records:
            row = _Row(path, source.unit, rec, "verdict", 0)
            row.require(ext.id_field, "the id of an imported item")
            ext_id = row.ext_id(ext.id_field)
            if ext_id is None:
                raise row.error(ext.id_field, "expected the id of an imported item, found an empty value")
            if ext_id not in sizes:
                raise row.error(
                    ext.id_field, f"expected the id of an imported item, found {ext_id!r}, which is not one"
                )
            if ext_id in first_seen:
                raise row.error(
                    ext.id_field,
                    f"expected one verdict per item, found {ext_id!r} twice: {source.unit} {first_seen[ext_id]} "
                    f"and {source.unit} {rec.pos}",
                )
            first_seen[ext_id] = rec.pos
            row.require(ext.verdict_field, "a verdict (or an empty value)")
            code = row.label_key(ext.verdict_field)
            if code is None:
                continue
            choice = row.lookup(ext.verdict_field, code, ext.values)
            if sizes[ext_id] != 2:
                raise row.error(ext.id_field, f"expected a pair item for a verdict, found {sizes[ext_id]} responses")
            verdicts.append(ImportedVerdict(ext_id, _FLIP.get(choice, choice) if ext_id in swapped else choice))
    if not first_seen:
        raise ImportFileError(path, None, None, "empty file: expected at least one verdict, found none")
    return tuple(verdicts)
