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
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrm_ui.domain import Choice, ImportedDataset, ImportedItem, ImportedLabel, ImportedVerdict, Rejected
from rrm_ui.io.readers import FILE_TYPES, ImportFileError, Record, describe, mb, open_records

__all__ = [
    "FORMATS",
    "GOLD_RULES",
    "PRESETS",
    "ExternalVerdicts",
    "ImportFileError",
    "ItemRef",
    "LabelFile",
    "Mapping",
    "default_name",
    "detect_format",
    "parse_label_values",
    "item_refs",
    "parse_mapping",
    "read_dataset",
    "read_labels",
    "read_verdicts",
]

_CHOICE_NAMES = {c.value.lower(): c for c in Choice}
_FLIP = {Choice.A: Choice.B, Choice.B: Choice.A}
_MAP_KEYS = ("query", "responses", "label", "id", "subset", "gold")


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
    gold: str | None = None  # gold from the structure: a key of GOLD_RULES

    def __post_init__(self) -> None:
        if self.gold is not None:
            if self.gold not in GOLD_RULES:
                raise ValueError(f"gold rule {self.gold!r}: expected one of {', '.join(GOLD_RULES)}")
            if self.label is not None:
                raise ValueError("give gold either by a label field or by a gold rule, not both")
            if not self.responses:
                raise ValueError("a gold rule needs mapped responses")
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


# Gold from the structure of a mapped record (``--gold RULE``), for files whose responses are
# listed in a known order instead of carrying a label. The presentation order is then drawn
# pseudo-randomly (as for chosen/rejected data), so the layout of the file never favours a position.
GOLD_RULES: dict[str, str] = {
    "first-beats-rest": "the first mapped response beats every other one (tiers 0, 1, 1, ...): best-of-N sets",
    "in-order": "the mapped responses are listed best first (tiers 0, 1, 2, ...)",
}

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
    "preference-implicit": "chosen + rejected strings holding the whole conversation, no prompt field (HH-RLHF's "
    "'\\n\\nHuman: ...\\n\\nAssistant: ...'; without role markers the shared start, as TRL's extract_prompt)",
}


@dataclass(frozen=True)
class ExternalVerdicts:
    """Another judge's verdicts, in a file of their own, joined to the items on an id field.

    ``values`` decodes the verdict field (to A, B, tie, or None for "no verdict": a judge that
    failed to answer, stored as an undecided result); a null or empty verdict is no row at all.
    The verdicts become the external run named ``run``.
    """

    path: str | Path
    run: str
    id_field: str = "id"
    verdict_field: str = "verdict"
    values: dict[str, Choice | None] = field(
        default_factory=lambda: {"A": Choice.A, "B": Choice.B, "tie": Choice.TIE}
    )  # None: "no verdict" (the judge failed to answer)
    ranking_field: str | None = None  # list items: a field with the judge's ranking (indices, best first)

    def __post_init__(self) -> None:
        if not self.run.strip():
            raise ValueError("an external run needs a name")
        if Choice.BOTH_BAD in self.values.values():
            raise ValueError("external verdicts are A, B, tie or none (no verdict); both_bad is a human label only")


def parse_label_values(spec: str, *, verdicts: bool = False) -> dict[str, Choice | None]:
    """``"1=A,2=B,0=tie,3=both_bad"`` -> ``{"1": Choice.A, ...}`` (choice names case-insensitive).

    With ``verdicts`` (a judge's codes) the choices are A, B, tie and ``none``, a verdict the
    judge failed to give (``garbage=none``), which maps to None.
    """
    out: dict[str, Choice | None] = {}
    for part in spec.split(","):
        code, eq, name = part.partition("=")
        code, name = code.strip(), name.strip()
        if not eq or not code or not name:
            raise ValueError(f"label values {spec!r}: expected CODE=CHOICE pairs like 1=A,2=B, found {part.strip()!r}")
        if verdicts and name.lower() in ("none", "no_verdict", "no-verdict"):
            if code in out:
                raise ValueError(f"label values {spec!r}: the code {code!r} is given twice")
            out[code] = None
            continue
        if verdicts and name.lower() == "both_bad":
            raise ValueError(
                f"verdict codes {spec!r}: both_bad is a human label; a judge's codes map to A, B, tie or none"
            )
        if name.lower() not in _CHOICE_NAMES:
            expected = "A, B, tie or none (no verdict)" if verdicts else "A, B, tie or both_bad"
            raise ValueError(f"label values {spec!r}: {name!r} is not a choice; expected {expected}")
        if code in out:
            raise ValueError(f"label values {spec!r}: the code {code!r} is given twice")
        out[code] = _CHOICE_NAMES[name.lower()]
    return out


def parse_mapping(pairs: list[str], labels: str | None) -> Mapping:
    """A :class:`Mapping` from CLI ``--map KEY=FIELDS`` pairs and ``--labels CODE=CHOICE,...``.

    Keys: query (fields joined by ``+``), responses (fields joined by ``,``), label, id,
    subset, gold (a rule of :data:`GOLD_RULES`). A field may be a path into nested objects and
    lists: ``a.b``, ``a[0].b``, ``list[].answer`` (every element). ``--labels`` without ``--map
    label=...`` decodes the field ``label``; ``--labels`` alone (no ``--map``) decodes the label
    of a detected pairwise file.
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
    for key in ("query", "responses", "id", "subset"):
        for path in split(key, ","):
            _path_segments(path)  # a malformed path is refused here, before the file is read
    try:
        return Mapping(
            query, split("responses", ","), label, values, given.get("id"), given.get("subset"), given.get("gold")
        )
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
        if isinstance(chosen, str) and isinstance(rejected, str):
            return "preference-implicit"
    known = " | ".join(f"{k}: {v}" for k, v in FORMATS.items())
    raise ImportFileError(
        path,
        line,
        None,
        f"unknown format: found the fields {', '.join(map(repr, r)) or 'none'}; expected the fields of a known "
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
    response_meta: tuple[dict[str, Any], ...] | None = None  # per response: the other fields of its object


class _Row:
    """One record being read: its fields, which of them were used, and errors that point at it."""

    __slots__ = ("coerced", "data", "empty", "fmt", "limit", "path", "pos", "unit", "used")

    def __init__(self, path: Path, unit: str, rec: Record, fmt: str, limit: int) -> None:
        self.path, self.unit, self.pos, self.data, self.fmt, self.limit = path, unit, rec.pos, rec.data, fmt, limit
        self.used: set[str] = set()
        self.coerced: list[tuple[str, str]] = []  # (field, what was found) read as text
        self.empty: list[str] = []  # response fields that were empty

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

    def text(self, key: str, value: Any, *, empty_ok: bool = False) -> str:
        """A text field: a string (non-empty unless ``empty_ok``), or a number or boolean read as its text.

        A boolean becomes ``"True"``/``"False"`` and a number its decimal text, as the official RRM
        code's ``clean_value`` does (``RRM-evaluation/scripts/run_generative.py``); each such value is
        counted in ``coerced`` so the import summary reports it.
        """
        if isinstance(value, bool | int | float) and not (isinstance(value, float) and not math.isfinite(value)):
            self.coerced.append((key, describe(value)))
            return str(value)
        if isinstance(value, str) and (value.strip() or empty_ok):
            if not value.strip():
                self.empty.append(key)
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
        """A response, read as :meth:`text` reads it; empty is allowed (a model that answered nothing)."""
        text = self.text(key, value, empty_ok=True)
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

    def resolve(self, path: str, expected: str) -> list[tuple[str, Any, dict[str, Any] | None]]:
        """The values at ``path`` (a field, or a path like ``a.b``, ``a[0].b``, ``list[].answer``).

        Returns ``(where, value, parent)`` per value found: ``where`` names it for messages
        (``loser_list[2].answer``), ``parent`` is the object that holds it (None for a top-level field).
        """
        if path in self.data or not _is_path(path):
            return [(path, self.require(path, expected), None)]
        segments = _path_segments(path)
        self.used.add(segments[0][0])
        found: list[tuple[str, Any, dict[str, Any] | None]] = [("", self.data, None)]
        for name, indices in segments:
            step = []
            for where, value, _ in found:
                here = f"{where}.{name}" if where else name
                if not isinstance(value, dict):
                    raise self.error(where, f"expected an object with the field {name!r}, found {describe(value)}")
                if name not in value:
                    raise self.error(here, f"expected {expected}, found the field missing (the mapping names {path!r})")
                step.append((here, value[name], value if where else None))
            for index in indices:
                expanded = []
                for where, value, parent in step:
                    if not isinstance(value, list):
                        raise self.error(where, f"expected a list, found {describe(value)}")
                    if index is None:
                        expanded += [(f"{where}[{k}]", v, parent) for k, v in enumerate(value)]
                    elif index < len(value):
                        expanded.append((f"{where}[{index}]", value[index], parent))
                    else:
                        raise self.error(where, f"expected a list with an element [{index}], found {describe(value)}")
                step = expanded
            found = step
        return found

    def extras(self) -> dict[str, Any]:
        """The fields no format or mapping used, for the item's metadata; each capped like a response."""
        out = {}
        for k, v in self.data.items():
            if k in self.used:
                continue
            out[k] = value = _jsonable(v)
            if self.limit and not isinstance(value, bool | int | float | None):
                n = len(value.encode("utf-8")) if isinstance(value, str) else len(json.dumps(value).encode("utf-8"))
                if n > self.limit:
                    raise self.error(
                        k, f"value too large for metadata: it is {mb(n)}, over the per-value limit of {mb(self.limit)}"
                    )
        return out


_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d*\])*)")


def _is_path(field_name: str) -> bool:
    return "." in field_name or "[" in field_name


def _path_segments(path: str) -> list[tuple[str, list[int | None]]]:
    """``"loser_list[].answer"`` -> ``[("loser_list", [None]), ("answer", [])]`` (None: every element)."""
    out: list[tuple[str, list[int | None]]] = []
    for part in path.split("."):
        m = _SEGMENT.fullmatch(part.strip())
        if not m:
            raise ValueError(
                f"field path {path!r}: cannot read {part!r}; expected names separated by dots, each optionally "
                "followed by [N] (one element) or [] (every element), e.g. loser_list[].answer"
            )
        indices = [None if b == "[]" else int(b[1:-1]) for b in re.findall(r"\[\d*\]", m.group(2))]
        out.append((m.group(1).strip(), indices))
    return out


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


def _flatten(turns: list[tuple[str, str]]) -> tuple[str, int | None]:
    """A prompt of (role, content) turns as one query: a lone user turn as it is, else role-prefixed turns."""
    turns = [(role, content) for role, content in turns if content.strip()]
    if len(turns) == 1 and turns[0][0].lower() == "user":
        return turns[0][1], None
    return "\n\n".join(f"{role.capitalize()}: {content}" for role, content in turns), len(turns)


def _query_value(row: _Row, key: str, value: Any) -> tuple[str, int | None]:
    """A mapped query part: text, or a list of {role, content} messages flattened like a conversational prompt."""
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        query, turns = _flatten(_messages(row, key, value))
        if not query.strip():
            raise row.error(key, "expected messages with text, found only empty contents")
        return query, turns
    return row.text(key, value), None


def _mapped(row: _Row, m: Mapping | None) -> _Parsed:
    assert m is not None
    parts: list[str] = []
    turns: int | None = None
    for path in m.query:
        found = row.resolve(path, "a non-empty string" if len(m.query) == 1 else "a string")
        for key, value, _ in found:
            if len(m.query) > 1 and (value is None or (isinstance(value, str) and not value.strip())):
                continue  # several query fields: empty parts are skipped
            text, n = _query_value(row, key, value)
            turns = n if n is not None else turns
            parts.append(text)
    if not parts:
        raise row.error(m.query[0], f"expected text in at least one of the fields {', '.join(m.query)}, found none")
    query = "\n\n".join(parts)
    responses: list[str] = []
    meta: list[dict[str, Any]] = []
    if len(m.responses) == 1 and not _is_path(m.responses[0]):
        key = m.responses[0]
        responses = list(row.responses(key, row.require(key, "a list of at least 2 strings"), 2))
        meta = [{} for _ in responses]
    else:
        for path in m.responses:
            for key, value, parent in row.resolve(path, "a string (a response)"):
                responses.append(row.response(key, value))
                leaf = key.rsplit(".", 1)[-1]
                meta.append({k: _jsonable(v) for k, v in parent.items() if k != leaf} if parent is not None else {})
        if len(responses) < 2:
            raise row.error(
                m.responses[0], f"expected at least 2 responses from {', '.join(m.responses)}, found {len(responses)}"
            )
    gold = None
    tiers: tuple[int, ...] | None = None
    if m.label is not None:
        row.require(m.label, "a label")
        gold = _pair_label(row, m.label, len(responses), m.label_values)
        tiers = _pair_tiers(gold) if gold else None
    elif m.gold == "first-beats-rest":
        tiers = (0,) + (1,) * (len(responses) - 1)
    elif m.gold == "in-order":
        tiers = tuple(range(len(responses)))
    parsed = _Parsed(query, tuple(responses), tiers, gold, swappable=m.gold is not None, turns=turns)
    parsed.response_meta = tuple(meta) if any(meta) else None
    return parsed


_MARKERS = re.compile(r"(?:^|\n\n)(Human|User|Assistant):")
_MARKER_ROLES = {"human": "user", "user": "user", "assistant": "assistant"}


def _turns(text: str) -> list[tuple[str, str]] | None:
    """``"\\n\\nHuman: q\\n\\nAssistant: a"`` -> [("user", "q"), ("assistant", "a")]; None without role markers.

    The text must start with a role marker (after leading blank lines); one space after each
    marker's colon is part of the marker. Anthropic HH-RLHF writes ``Human:``/``Assistant:``,
    others ``User:``/``Assistant:``.
    """
    parts = _MARKERS.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    return [
        (_MARKER_ROLES[role.lower()], content[1:] if content.startswith(" ") else content)
        for role, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _trl_extract_prompt(chosen: str, rejected: str) -> int:
    """Where the implicit prompt ends, as TRL's ``extract_prompt`` (trl/data_utils.py) finds it: the first
    differing character, one back when the character before it is a space."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):  # noqa: B007 - TRL keeps the loop's last index
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":
                idx -= 1
            break
    return idx


def _implicit(row: _Row, _: Mapping | None) -> _Parsed:
    """``chosen``/``rejected`` strings with the conversation inside them and no prompt field."""
    chosen = row.text("chosen", row.require("chosen", "a string"), empty_ok=True)
    rejected = row.text("rejected", row.require("rejected", "a string"), empty_ok=True)
    c_turns, r_turns = _turns(chosen), _turns(rejected)
    if c_turns is not None and r_turns is not None:
        shared = 0
        while shared < min(len(c_turns), len(r_turns)) and c_turns[shared] == r_turns[shared]:
            shared += 1
        prompt = c_turns[:shared]
        if not any(role == "user" and content.strip() for role, content in prompt):
            raise row.error("chosen", "expected chosen and rejected to start with the same Human turn, found none")
        replies = []
        for key, rest in (("chosen", c_turns[shared:]), ("rejected", r_turns[shared:])):
            if not rest:
                raise row.error(key, "expected an Assistant turn after the shared prompt, found the text ending there")
            if (bad := next((k for k, (role, _) in enumerate(rest) if role != "assistant"), None)) is not None:
                raise row.error(
                    key,
                    "expected only Assistant turns after the shared prompt, found a Human turn "
                    f"(turn {shared + bad + 1})",
                )
            replies.append(row.response(key, "\n\n".join(content for _, content in rest)))
        query, turns = _flatten(prompt)
        return _Parsed(query, tuple(replies), (0, 1), Choice.A, True, turns, True)
    idx = _trl_extract_prompt(chosen, rejected)
    query = chosen[:idx]
    if not query.strip():
        raise row.error("chosen", "expected chosen and rejected to share a prompt at their start, found none")
    pair = (row.response("chosen", chosen[idx:]), row.response("rejected", rejected[idx:]))
    return _Parsed(query, pair, (0, 1), Choice.A, True, None, True)


_CONVERTERS: dict[str, Callable[[_Row, Mapping | None], _Parsed]] = {
    "listwise": _listwise,
    "rmbench": _rmbench,
    "pairwise": _pairwise,
    "preference": _preference,
    "trl-conversational": _trl,
    "preference-implicit": _implicit,
}


def _swap(seed: int, key: str) -> bool:
    """The deterministic pseudo-random draw: show the chosen response second?"""
    return bool(hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()[0] & 1)


def _order(seed: int, key: str, n: int) -> list[int]:
    """The presentation order of ``n`` responses listed best first: source index of each shown position.

    Two responses use :func:`_swap` (the draw every earlier import made); more are shuffled with a
    generator seeded from the same digest.
    """
    if n == 2:
        return [1, 0] if _swap(seed, key) else [0, 1]
    order = list(range(n))
    random.Random(hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()).shuffle(order)
    return order


GENERIC_STEMS = frozenset({"dataset", "data"})  # file names that say nothing: the folder's name is used


def default_name(path: str | Path) -> str:
    """The data set name of a file: its name without compression and file-type extensions; for a file
    named ``dataset`` or ``data`` (LLMBar's ``Natural/dataset.json``) the name of the folder the path
    names (``Natural``). A bare file name (an upload: the browser sends no folder) keeps its own name."""
    path = Path(path)
    name = path.name.removesuffix(".gz").removesuffix(".GZ")
    stem, dot, ext = name.rpartition(".")
    own = stem if dot and stem and f".{ext.lower()}" in FILE_TYPES else name
    folder = path.parent.name
    return folder if own.lower() in GENERIC_STEMS and folder not in ("", ".", "..") else own


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
    skip_invalid: bool = False,
) -> ImportedDataset:
    """Read and validate every record of ``path``; raise :class:`ImportFileError` on the first problem.

    ``name`` defaults to the file name without its extensions. ``annotator_columns`` maps
    column -> annotator name; their values are decoded with ``annotator_labels`` (a null or
    empty value: that annotator did not label the row). ``external`` joins another judge's
    verdicts (an :class:`ExternalVerdicts`, or the tuple of its fields). Files over
    ``max_bytes`` and responses (or any other value) over ``max_response_bytes`` are refused.
    With ``skip_invalid`` a record with a problem is skipped instead (the file as a whole must
    still be readable): each one is in ``rejects`` with its line and reason, and the notes count them.
    """
    path = Path(path)
    if isinstance(external, tuple):  # (path, run, id_field, verdict_field, values) is accepted too
        external = ExternalVerdicts(*external)
    annotator_columns = annotator_columns or {}
    if annotator_columns and not annotator_labels:
        raise ValueError("annotator columns need annotator label values (e.g. 1=A,2=B)")
    items: list[ImportedItem] = []
    labels: list[ImportedLabel] = []
    rejects: list[Rejected] = []
    first_seen: dict[str, int] = {}
    fmt = ""
    shuffled = reordered = generated = implicit = flattened = 0
    coerced: dict[str, int] = {}
    empty = 0
    with open_records(path, max_bytes, max_response_bytes) as source:
        unit = source.unit
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
            try:
                item, row_labels, parsed, given_id = _read_item(
                    row, convert, mapping, annotator_columns, annotator_labels, shuffle_seed, first_seen
                )
            except ImportFileError as e:
                if not skip_invalid:
                    raise
                rejects.append(Rejected(e.line, e.unit, e.field, e.detail, _jsonable(rec.data)))
                continue
            first_seen[item.ext_id] = rec.pos
            generated += given_id is None
            shuffled += parsed.swappable
            reordered += "source_order" in item.metadata
            implicit += parsed.implicit_prompt
            flattened += parsed.turns is not None
            for key, _ in row.coerced:
                coerced[_field_kind(key)] = coerced.get(_field_kind(key), 0) + 1
            empty += len(row.empty)
            labels += row_labels
            items.append(item)
    if not items:
        if rejects:
            raise ImportFileError(
                path, None, None, f"no valid record: all {len(rejects)} record(s) were refused ({_reasons(rejects)})"
            )
        raise ImportFileError(path, None, None, "empty file: expected at least one record, found none")
    verdicts: tuple[ImportedVerdict, ...] = ()
    if external:
        index = {it.ext_id: ItemRef(len(it.responses), _source_order(it.metadata)) for it in items}
        verdicts, _ = read_verdicts(external, index, max_bytes=max_bytes)
    notes = []
    if shuffled:
        notes.append(
            f"presentation order shuffled with seed {shuffle_seed}: a pseudo-random draw from the seed and each "
            f"item's id (or its prompt) kept the source order (best first) in {shuffled - reordered} of {shuffled} "
            "items; gold_tiers mark the better response(s), metadata 'source_order' the file's order"
        )
    if generated:
        notes.append(f"{generated} record(s) had no id and are named row-<N> after their {unit}")
    if implicit:
        notes.append(f"{implicit} record(s) had no prompt field: the prompt is the start chosen and rejected share")
    if flattened:
        notes.append(f"{flattened} multi-turn prompt(s) flattened into role-prefixed turns (metadata 'turns')")
    if empty:
        notes.append(
            f"{empty} empty response(s) kept as empty text (a model that answered nothing; judged and shown as empty)"
        )
    if coerced:
        where = ", ".join(f"{k} {n}" for k, n in sorted(coerced.items()))
        notes.append(
            f"{sum(coerced.values())} number or boolean value(s) where text was expected read as their text "
            f"(true -> 'True', as the official RRM code's clean_value does): {where}"
        )
    if rejects:
        notes.append(f"{len(rejects)} record(s) skipped as invalid (skip_invalid): {_reasons(rejects)}")
    return ImportedDataset(
        name=name or default_name(path),
        source=str(Path(path).resolve()),
        format=fmt,
        items=tuple(items),
        labels=tuple(labels),
        external_run=external.run if external else None,
        external=verdicts,
        notes=tuple(notes),
        rejects=tuple(rejects),
    )


def _read_item(
    row: _Row,
    convert: Callable[[_Row, Mapping | None], _Parsed],
    mapping: Mapping | None,
    annotator_columns: dict[str, str],
    annotator_labels: dict[str, Choice] | None,
    shuffle_seed: int,
    first_seen: dict[str, int],
) -> tuple[ImportedItem, list[ImportedLabel], _Parsed, str | None]:
    """One record as an item and its annotators' labels, or :class:`ImportFileError` (nothing kept)."""
    if mapping is not None and mapping.id:
        row.resolve(mapping.id, "an id (a string or an integer)")
    id_key = mapping.id if mapping is not None and not mapping.labels_only else "id"
    given_id = row.ext_id(id_key) if id_key else None
    subset_key = mapping.subset if mapping is not None and not mapping.labels_only else "subset"
    subset = row.subset(subset_key) if subset_key else None
    parsed = convert(row, mapping)
    ext_id = given_id if given_id is not None else f"row-{row.pos}"
    if ext_id in first_seen:
        raise row.error(
            id_key or "id",
            f"expected a unique id, found {ext_id!r} twice: {row.unit} {first_seen[ext_id]} and {row.unit} {row.pos}",
        )
    responses, tiers, meta = parsed.responses, parsed.tiers, parsed.response_meta
    order = list(range(len(responses)))
    if parsed.swappable:
        order = _order(shuffle_seed, given_id if given_id is not None else parsed.query, len(responses))
        responses = tuple(responses[k] for k in order)
        tiers = tuple(tiers[k] for k in order) if tiers else None
        meta = tuple(meta[k] for k in order) if meta else None
    swapped = order == [1, 0]
    labels = []
    for column, annotator in annotator_columns.items():
        row.require(column, "an annotator's label (or an empty value)")
        code = row.label_key(column)
        if code is None:
            continue
        assert annotator_labels is not None
        choice = row.lookup(column, code, annotator_labels)
        if len(responses) != 2:
            raise row.error(column, f"expected a pair for an annotator label, found {len(responses)} responses")
        labels.append(ImportedLabel(ext_id, annotator, _FLIP.get(choice, choice) if swapped else choice))
    metadata = row.extras()
    if parsed.gold in (Choice.TIE, Choice.BOTH_BAD):
        metadata["gold_choice"] = parsed.gold.value
    if parsed.turns is not None:
        metadata.update(flattened="role-prefixed", turns=parsed.turns)
    if order != sorted(order):
        metadata["source_order"] = order
    if meta:
        metadata["response_meta"] = list(meta)
    return ImportedItem(ext_id, parsed.query, responses, row.pos, subset, tiers, metadata), labels, parsed, given_id


def _field_kind(key: str) -> str:
    """``responses[3]`` and ``loser_list[2].answer`` count as one kind of field in the notes."""
    return re.sub(r"\[\d+\]", "[]", key)


def _reasons(rejects: list[Rejected], most: int = 5) -> str:
    """The commonest reasons among refused records, counted: ``field 'x': expected ... (3)``."""
    counts: dict[str, int] = {}
    for r in rejects:
        why = r.reason.split(", found ")[0]
        key = f"field {_field_kind(r.field)!r}: {why}" if r.field else why
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = "; ".join(f"{k} ({n})" for k, n in top[:most])
    return shown + (f"; and {len(top) - most} other reason(s)" if len(top) > most else "")


# --- files attached to items: another judge's verdicts, human labels ------------------------------


@dataclass(frozen=True)
class ItemRef:
    """What reading a verdict or label file needs to know of an item: its size and presentation order."""

    n_responses: int
    source_order: tuple[int, ...] | None = None  # stored position -> source index; None: as in the file

    @property
    def swapped(self) -> bool:
        return self.source_order == (1, 0)

    def stored(self, source_index: int) -> int:
        """The stored position of the response at ``source_index`` in the file."""
        return self.source_order.index(source_index) if self.source_order else source_index

    def pair(self, i: int, j: int, choice: Choice) -> tuple[int, int, Choice]:
        """A label on the file's responses (i, j) as stored: positions in ``i < j`` order, the choice
        mirrored when that reverses them (A: the first of the two is better)."""
        a, b = self.stored(i), self.stored(j)
        if a > b:
            return b, a, _FLIP.get(choice, choice)
        return a, b, choice


def _source_order(metadata: dict[str, Any] | None) -> tuple[int, ...] | None:
    order = (metadata or {}).get("source_order")
    return tuple(order) if isinstance(order, list) else None


def item_refs(stored: list[tuple[str, int, dict[str, Any] | None, Any]], fmt: str) -> dict[str, ItemRef]:
    """:class:`ItemRef` of stored items from (ext_id, n_responses, metadata, gold_tiers).

    Items imported before ``source_order`` was recorded: chosen/rejected formats put the chosen
    response first in the file, so a pair whose gold says the second is better was shown swapped.
    """
    out = {}
    for ext_id, n, meta, tiers in stored:
        order = _source_order(meta)
        if order is None and fmt in _CHOSEN_FIRST and n == 2 and list(tiers or ()) == [1, 0]:
            order = (1, 0)
        out[ext_id] = ItemRef(n, order)
    return out


_CHOSEN_FIRST = ("preference", "trl-conversational", "preference-implicit")


def _attached(
    path: Path,
    id_field: str,
    index: dict[str, ItemRef],
    handle: Callable[[_Row, str], None],
    *,
    max_bytes: int,
    skip_invalid: bool,
    what: str,
) -> tuple[Rejected, ...]:
    """Call ``handle(row, ext_id)`` for each row of a file attached to items, joined on ``id_field``.

    A row whose id the data set lacks, or that ``handle`` refuses, raises :class:`ImportFileError`;
    with ``skip_invalid`` it is returned among the rejects instead (``handle`` must keep nothing of
    a row it refuses).
    """
    rejects: list[Rejected] = []
    n = 0
    with open_records(path, max_bytes) as source:
        for rec in source.records:
            n += 1
            row = _Row(path, source.unit, rec, what, 0)
            try:
                row.require(id_field, "the id of an imported item")
                ext_id = row.ext_id(id_field)
                if ext_id is None:
                    raise row.error(id_field, "expected the id of an imported item, found an empty value")
                if ext_id not in index:
                    raise row.error(
                        id_field, f"expected the id of an item of the data set, found {ext_id!r}, which is not one"
                    )
                handle(row, ext_id)
            except ImportFileError as e:
                if not skip_invalid:
                    raise
                rejects.append(Rejected(e.line, e.unit, e.field, e.detail, _jsonable(rec.data)))
    if n == 0:
        raise ImportFileError(path, None, None, f"empty file: expected at least one {what}, found none")
    if n == len(rejects):
        raise ImportFileError(
            path, None, None, f"no valid {what}: all {n} record(s) were refused ({_reasons(rejects)})"
        )
    return tuple(rejects)


def read_verdicts(
    ext: ExternalVerdicts,
    index: dict[str, ItemRef],
    *,
    max_bytes: int = 512 * 1024**2,
    skip_invalid: bool = False,
) -> tuple[tuple[ImportedVerdict, ...], tuple[Rejected, ...]]:
    """Another judge's verdicts on the items of ``index`` (ext_id -> :class:`ItemRef`).

    One verdict per item; A/B refer to the order of the source record and follow a pair the
    importer swapped. A code mapped to ``none`` is a verdict the judge failed to give (stored as
    an undecided result); an empty value is no row at all. Rows with a problem (an id the data
    set lacks, a code outside the mapping, a list item) raise, or with ``skip_invalid`` are
    returned as rejects.
    """
    verdicts: list[ImportedVerdict] = []
    seen: dict[str, int] = {}

    def handle(row: _Row, ext_id: str) -> None:
        if ext_id in seen:
            raise row.error(
                ext.id_field,
                f"expected one verdict per item, found {ext_id!r} twice: {row.unit} {seen[ext_id]} and {row.unit} "
                f"{row.pos}",
            )
        ref = index[ext_id]
        if ext.ranking_field is not None and ref.n_responses > 2:
            ranking = row.require(ext.ranking_field, "a ranking (response indices, best first)")
            if ranking is None or ranking == "" or ranking == []:
                seen[ext_id] = row.pos
                verdicts.append(ImportedVerdict(ext_id, None, ()))  # the judge gave no ranking
                return
            n = ref.n_responses
            if (
                not isinstance(ranking, list)
                or any(not isinstance(k, int) or isinstance(k, bool) for k in ranking)
                or sorted(ranking) != list(range(n))
            ):
                raise row.error(
                    ext.ranking_field,
                    f"expected each response index 0..{n - 1} once, best first, found {describe(ranking)}",
                )
            seen[ext_id] = row.pos
            verdicts.append(ImportedVerdict(ext_id, None, tuple(ref.stored(k) for k in ranking)))
            return
        row.require(ext.verdict_field, "a verdict (or an empty value)")
        code = row.label_key(ext.verdict_field)
        if index[ext_id].n_responses != 2:
            raise row.error(
                ext.id_field,
                f"expected a pair item for a verdict, found {index[ext_id].n_responses} responses (a judge's verdict "
                "on a list item is a ranking: a ranking field)",
            )
        choice = None if code is None else row.lookup(ext.verdict_field, code, ext.values)
        seen[ext_id] = row.pos
        if code is not None:
            verdicts.append(ImportedVerdict(ext_id, _FLIP.get(choice, choice) if index[ext_id].swapped else choice))

    rejects = _attached(
        Path(ext.path), ext.id_field, index, handle, max_bytes=max_bytes, skip_invalid=skip_invalid, what="verdict"
    )
    return tuple(verdicts), rejects


@dataclass(frozen=True)
class LabelFile:
    """Human labels in a file of their own, joined to the items on an id field.

    Wide form: ``columns`` maps a column to an annotator's name (one column per annotator).
    Long form: ``annotator_field`` names the annotator of each row and ``label_field`` its label.
    ``values`` decodes the labels (A, B, tie, both_bad); an empty value is no label. A label is on
    the pair (0, 1) of a pair item; on a list item ``pair_fields`` name the fields holding the two
    responses' 0-based indices in the file's order (A: the first named is better).
    """

    path: str | Path
    values: dict[str, Choice]
    id_field: str = "id"
    columns: dict[str, str] = field(default_factory=dict)
    annotator_field: str | None = None
    label_field: str | None = None
    note_field: str | None = None
    pair_fields: tuple[str, str] | None = None  # list items: the fields naming the two responses (0-based)

    def __post_init__(self) -> None:
        if self.pair_fields is not None and (len(self.pair_fields) != 2 or not all(self.pair_fields)):
            raise ValueError("pair fields: expected two field names, e.g. pair_i,pair_j")
        if bool(self.columns) == bool(self.annotator_field):
            raise ValueError(
                "say whose labels they are: annotator columns (COLUMN=NAME, one per annotator) or an annotator "
                "field with a label field (one row per label), not both"
            )
        if self.annotator_field and not self.label_field:
            raise ValueError("an annotator field needs a label field")
        if None in self.values.values():
            raise ValueError("human labels are A, B, tie or both_bad; 'none' is for a judge's missing verdict")


def _index(row: _Row, key: str, n: int) -> int:
    """A 0-based response index of a list item, from a field (an integer, or its text)."""
    value = row.require(key, f"a response index 0..{n - 1}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
        raise row.error(key, f"expected a response index 0..{n - 1}, found {describe(value)}")
    return value


def read_labels(
    spec: LabelFile, index: dict[str, ItemRef], *, max_bytes: int = 512 * 1024**2, skip_invalid: bool = False
) -> tuple[tuple[ImportedLabel, ...], tuple[Rejected, ...]]:
    """Human labels on the pair items of ``index``; A/B follow a pair the importer swapped."""
    out: list[ImportedLabel] = []
    seen: dict[tuple[str, str, tuple[int, ...]], int] = {}

    def handle(row: _Row, ext_id: str) -> None:
        ref = index[ext_id]
        if spec.columns:
            pairs = list(spec.columns.items())
        else:
            assert spec.annotator_field is not None and spec.label_field is not None
            who = row.text(spec.annotator_field, row.require(spec.annotator_field, "an annotator's name")).strip()
            pairs = [(spec.label_field, who)]
        src = (0, 1)
        if spec.pair_fields is not None:
            src = tuple(_index(row, f, ref.n_responses) for f in spec.pair_fields)  # type: ignore[assignment]
            if src[0] == src[1]:
                raise row.error(spec.pair_fields[1], f"expected two different responses, found {src[0]} twice")
        found: list[tuple[str, int, int, Choice]] = []
        for column, annotator in pairs:
            row.require(column, "an annotator's label (or an empty value)")
            code = row.label_key(column)
            if code is None:
                continue
            choice = row.lookup(column, code, spec.values)
            if ref.n_responses != 2 and spec.pair_fields is None:
                raise row.error(
                    column,
                    f"expected a pair item for a label, found {ref.n_responses} responses (a label on a list "
                    "item names its two responses: pair fields)",
                )
            if (ext_id, annotator, src) in seen:
                raise row.error(
                    column,
                    f"expected one label per item, pair and annotator, found {annotator!r} on {ext_id!r} twice: "
                    f"{row.unit} {seen[ext_id, annotator, src]} and {row.unit} {row.pos}",
                )
            found.append((annotator, *ref.pair(src[0], src[1], choice)))
        note = None
        if spec.note_field and (value := row.get(spec.note_field)) not in (None, ""):
            note = row.text(spec.note_field, value)
        for annotator, i, j, choice in found:
            seen[ext_id, annotator, src] = row.pos
            out.append(ImportedLabel(ext_id, annotator, choice, note, i, j))

    rejects = _attached(
        Path(spec.path), spec.id_field, index, handle, max_bytes=max_bytes, skip_invalid=skip_invalid, what="label"
    )
    return tuple(out), rejects
