"""Files uploaded in the browser: a preview with the detected format, then an all-or-nothing import.

The browser sends the file to the web server's upload folder; these functions read it with
the same importers as ``rrm-ui import``. The data set name comes from the file's own name
(never a path: a name like ``../../x.jsonl`` becomes ``x``) unless the user gives one. Messages
name the file by the name the user chose, never the upload folder's path, with control and
text-direction characters replaced (they could hide or reorder the rest of the message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rrm_ui.domain import DatasetInfo
from rrm_ui.io.importers import PRESETS, Mapping, default_name, detect_format, parse_mapping, read_dataset
from rrm_ui.io.readers import ImportFileError, clip, open_records
from rrm_ui.storage import Repository

PREVIEW_ROWS = 5
MAX_UPLOAD_BYTES = 512 * 1024**2
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


def preview(path: str | Path, file_name: str | None = None) -> UploadPreview:
    """The first records of an uploaded file, its type and detected format, or what is wrong with it."""
    path = Path(path)
    shown = shown_name(file_name or path.name)
    name = safe_name(shown)
    records: list[dict[str, Any]] = []
    file_type = fmt = problem = None
    try:
        with open_records(path, MAX_UPLOAD_BYTES) as source:
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
) -> DatasetInfo:
    """Validate the whole uploaded file and store it in one transaction, or raise with what is wrong.

    Error messages name the uploaded file (not the server's temporary path), the line or row,
    the field and what was expected.
    """
    shown = shown_name(file_name or Path(path).name)
    try:
        ds = read_dataset(
            path, name=(name or "").strip() or safe_name(shown), mapping=mapping, max_bytes=MAX_UPLOAD_BYTES
        )
    except ImportFileError as e:
        raise ImportFileError(shown, e.line, e.field, e.detail.replace(str(path), shown), e.unit) from None
    return repo.create_dataset(ds)


__all__ = [
    "MAX_UPLOAD_BYTES",
    "UploadPreview",
    "import_upload",
    "mapping_from_text",
    "preview",
    "safe_name",
    "shown_name",
]
