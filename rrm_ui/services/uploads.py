"""Files uploaded in the browser: a preview with the detected format, then an all-or-nothing import.

The browser sends the file to the web server's upload folder; these functions read it with
the same importers as ``rrm-ui import``. The data set name comes from the file's own name
(never a path: a name like ``../../x.jsonl`` becomes ``x``) unless the user gives one. Messages
name the file by the name the user chose, never the upload folder's path, with control and
text-direction characters replaced (they could hide or reorder the rest of the message).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rrm_ui.domain import DatasetInfo, Rejected
from rrm_ui.io.importers import (
    PRESETS,
    ExternalVerdicts,
    LabelFile,
    Mapping,
    default_name,
    detect_format,
    parse_label_values,
    parse_mapping,
    read_dataset,
)
from rrm_ui.io.readers import ImportFileError, clip, open_records
from rrm_ui.services.datasets import Attached, Imported, attach_labels, attach_verdicts
from rrm_ui.storage import Repository

PREVIEW_ROWS = 5
MAX_UPLOAD_BYTES = 512 * 1024**2
MAX_VALUE_BYTES = 1024**2  # one value of a file (the importer's per-response limit)
# control characters and text-direction marks: in a message they could hide or reorder what follows
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class UploadPreview:
    file_name: str
    file_type: str | None  # jsonl, json, csv, tsv, parquet (None when the file could not be opened)
    format: str | None  # the detected format, or None when a mapping is needed
    fields: tuple[str, ...]
    rows: pd.DataFrame  # the first records, values clipped for display
    problem: str | None  # why the file cannot be imported as it is (None: it can)
    suggested_name: str


def safe_name(file_name: str) -> str:
    """A data set name from an uploaded file's name: no directories, no odd characters."""
    base = default_name(Path(file_name.replace("\\", "/")).name)
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-")
    return cleaned[:100] or "upload"


def shown_name(file_name: str) -> str:
    """An uploaded file's name as messages show it: control and text-direction characters become U+FFFD."""
    return _HIDDEN.sub("\ufffd", file_name)


def mapping_from_text(preset: str | None, text: str, labels: str) -> Mapping | None:
    """A mapping from the form: a preset name, or ``key=fields`` lines (``rrm-ui import --map`` syntax)."""
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[preset]
    pairs = [p.strip() for p in re.split(r"[\n;]+", text or "") if p.strip()]
    if not pairs and not (labels or "").strip():
        return None
    return parse_mapping(pairs, (labels or "").strip() or None)


def _top_field(path: str) -> str:
    """The record field a mapping path starts from: ``bon_best`` of ``bon_best.answer``, ``a`` of ``a[0].b``."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def mapping_fields(m: Mapping) -> tuple[str, ...]:
    """The record fields a mapping reads (query, responses, label), in that order."""
    wanted = [*m.query, *m.responses, *([m.label] if m.label else [])]
    return tuple(dict.fromkeys(_top_field(f) for f in wanted))


def missing_fields(m: Mapping, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The fields the mapping reads that the file's first records do not have."""
    return tuple(f for f in mapping_fields(m) if f not in fields)


def matching_presets(fields: tuple[str, ...]) -> list[str]:
    """The presets whose every field is in the file (the one with the most fields first)."""
    fits = [name for name, m in PRESETS.items() if not missing_fields(m, fields)]
    return sorted(fits, key=lambda name: -len(mapping_fields(PRESETS[name])))


def preview(path: str | Path, file_name: str | None = None) -> UploadPreview:
    """The first records of an uploaded file, its type and detected format, or what is wrong with it."""
    path = Path(path)
    shown = shown_name(file_name or path.name)
    name = safe_name(shown)
    records: list[dict[str, Any]] = []
    file_type = fmt = problem = None
    try:
        with open_records(path, MAX_UPLOAD_BYTES, MAX_VALUE_BYTES, batch_rows=PREVIEW_ROWS) as source:
            file_type = source.file_type
            for rec in source.records:
                records.append(rec.data)
                if len(records) >= PREVIEW_ROWS:
                    break
        if not records:
            problem = f"{shown}: the file holds no records"
        else:
            try:
                fmt = detect_format(records[0], path=shown, line=1)
            except ImportFileError as e:
                problem = f"{e} — map the fields below"
    except ImportFileError as e:
        problem = str(e).replace(str(path), shown)
    fields = tuple(dict.fromkeys(k for r in records for k in r))
    rows = pd.DataFrame([{k: clip(_show(r.get(k))) for k in fields} for r in records], columns=list(fields))
    return UploadPreview(shown, file_type, fmt, fields, rows, problem, name)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def import_upload(
    repo: Repository,
    path: str | Path,
    *,
    file_name: str | None = None,
    name: str | None = None,
    mapping: Mapping | None = None,
    skip_invalid: bool = False,
) -> DatasetInfo:
    """Validate the whole uploaded file and store it in one transaction, or raise with what is wrong.

    Error messages name the uploaded file (not the server's temporary path), the line or row,
    the field and what was expected. With ``skip_invalid`` the refused records are left out:
    :func:`import_upload_with_rejects` returns them too.
    """
    return import_upload_with_rejects(
        repo, path, file_name=file_name, name=name, mapping=mapping, skip_invalid=skip_invalid
    ).info


def import_upload_with_rejects(
    repo: Repository,
    path: str | Path,
    *,
    file_name: str | None = None,
    name: str | None = None,
    mapping: Mapping | None = None,
    skip_invalid: bool = False,
) -> Imported:
    shown = shown_name(file_name or Path(path).name)
    with _named(path, shown):
        ds = read_dataset(
            path,
            name=(name or "").strip() or safe_name(shown),
            mapping=mapping,
            max_bytes=MAX_UPLOAD_BYTES,
            skip_invalid=skip_invalid,
        )
    return Imported(repo.create_dataset(ds), ds.rejects)


def attach_upload(
    repo: Repository,
    path: str | Path,
    *,
    file_name: str | None,
    dataset: str,
    kind: str,
    codes: str,
    id_field: str = "id",
    annotator_columns: str = "",
    annotator_field: str = "",
    label_field: str = "",
    verdict_field: str = "verdict",
    run: str = "",
    skip_invalid: bool = False,
    pair_fields: str = "",
    ranking_field: str = "",
) -> Attached:
    """Attach an uploaded labels file (``kind`` "labels") or verdicts file ("verdicts") to a stored data set.

    The form's fields are those of ``rrm-ui labels import`` and ``rrm-ui verdicts import``:
    annotator columns as ``COLUMN=NAME`` lines (wide form) or an annotator field and a label
    field (long form); ``codes`` as ``CODE=CHOICE`` pairs (``none`` for a verdict not given).
    """
    shown = shown_name(file_name or Path(path).name)
    if not (codes or "").strip():
        raise ValueError("say what each code in the file means (Codes, e.g. 1=A,2=B,0=tie); codes are never guessed")
    if kind == "labels":
        columns = {}
        for line in re.split(r"[\n;,]+", annotator_columns or ""):
            if not line.strip():
                continue
            column, eq, who = line.partition("=")
            if not eq or not column.strip() or not who.strip():
                raise ValueError(f"Annotator columns: expected COLUMN=NAME lines, found {line.strip()!r}")
            columns[column.strip()] = who.strip()
        spec = LabelFile(
            path,
            parse_label_values(codes),
            id_field=(id_field or "id").strip(),
            columns=columns,
            annotator_field=(annotator_field or "").strip() or None,
            label_field=(label_field or "").strip() or None,
            pair_fields=_two(pair_fields),
        )
        with _named(path, shown):
            return attach_labels(repo, dataset, spec, skip_invalid=skip_invalid, max_bytes=MAX_UPLOAD_BYTES)
    if kind == "verdicts":
        if not (run or "").strip():
            raise ValueError("name the other judge's run (Run name)")
        spec_v = ExternalVerdicts(path, run.strip(), (id_field or "id").strip(), (verdict_field or "verdict").strip(),
                                  parse_label_values(codes, verdicts=True),
                                  (ranking_field or "").strip() or None)  # fmt: skip
        with _named(path, shown):
            return attach_verdicts(repo, dataset, spec_v, skip_invalid=skip_invalid, max_bytes=MAX_UPLOAD_BYTES)
    raise ValueError(f"unknown kind of file {kind!r}: expected labels or verdicts")


def _two(text: str) -> tuple[str, str] | None:
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not parts:
        return None
    if len(parts) != 2:
        raise ValueError(f"Pair fields: expected two field names, I_FIELD,J_FIELD; found {text!r}")
    return parts[0], parts[1]


@contextlib.contextmanager
def _named(path: str | Path, shown: str) -> Iterator[None]:
    """Errors about the upload name the file the user chose, never the server's temporary path."""
    try:
        yield
    except ImportFileError as e:
        raise ImportFileError(shown, e.line, e.field, e.detail.replace(str(path), shown), e.unit) from None


def rejects_table(rejects: tuple[Rejected, ...], most: int = 200) -> pd.DataFrame:
    """The skipped rows for a page: line or row, field, reason."""
    return pd.DataFrame(
        [{"where": f"{r.unit} {r.line}" if r.line else "", "field": r.field or "", "reason": r.reason}
         for r in rejects[:most]],
        columns=["where", "field", "reason"],
    )  # fmt: skip


__all__ = [
    "MAX_UPLOAD_BYTES",
    "UploadPreview",
    "attach_upload",
    "import_upload",
    "import_upload_with_rejects",
    "mapping_from_text",
    "preview",
    "rejects_table",
    "safe_name",
    "shown_name",
]
