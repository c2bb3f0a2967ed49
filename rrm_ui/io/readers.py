"""Reading records out of data files, for :mod:`rrm_ui.io.importers`.

:func:`open_records` opens a file and yields its records (dicts) one at a time:

* JSONL (``.jsonl``, ``.ndjson``): one JSON object per line, read line by line; blank
  lines are skipped but counted. Records are numbered by physical line ("line N").
* JSON (``.json``): one top-level list of objects. The list is loaded whole (the file is
  at most ``max_bytes``); records are numbered by their 1-based position ("row N").
* CSV (``.csv``, comma) and TSV (``.tsv``/``.tab``, tab): a header row, then one record
  per row, read line by line; every value is a string. "row N" is the N-th data row
  (the header is not counted; blank rows are skipped and not counted).
* Parquet (``.parquet``/``.pq``): read by record batches ("row N", 1-based).

Any of them may be gzip-compressed: a file is gzip when it starts with the gzip magic
bytes (a ``.gz`` name without them is an error). The type comes from the extension
after ``.gz`` is removed; without a known extension the content decides (``PAR1`` is
Parquet, ``[`` JSON, ``{`` JSONL).

Text must be UTF-8 without NUL bytes (a leading BOM is dropped), and a JSON record may nest
lists and objects at most :data:`MAX_DEPTH` levels deep, so that no later step recurses deeply.

Memory stays bounded by the records the caller keeps: nothing is read ahead beyond a
line (JSONL, CSV) or a record batch (Parquet); only JSON lists are loaded whole. The
file size is checked before reading and, for gzip, the decompressed bytes are counted
as they arrive, so a small file that inflates past ``max_bytes`` is refused too.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
FILE_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SNIFF = 8192  # bytes looked at to tell text from binary
_CLIP = 60
_PARQUET_BATCH = 32  # Parquet rows per record batch: at most 32 values of a column decoded at once
_GZIP_ERRORS = (OSError, EOFError, zlib.error)
MAX_DEPTH = 100  # levels of lists and objects in one JSON record (a record itself is level 1)


class ImportFileError(ValueError):
    """A problem with a data file being imported.

    ``path`` is the file; ``line`` the 1-based line or row of the problem (None for the
    file as a whole), ``unit`` says which ("line" or "row"); ``field`` the offending field
    (None when the record as a whole is wrong); ``detail`` the message without the
    location prefix. ``str()`` reads like
    ``"data.csv, row 7, field 'label': value '3' is not in the label mapping 1=A,2=B; ..."``.
    """

    def __init__(self, path: str | Path, line: int | None, field: str | None, detail: str, unit: str = "line") -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.detail = detail
        self.unit = unit
        where = str(path)
        if line is not None:
            where += f", {unit} {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {detail}")


def clip(text: str) -> str:
    """Shorten ``text`` to about ``_CLIP`` characters."""
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."


def describe(value: Any) -> str:
    """Describe a value for an error message: its kind plus a clipped rendering."""
    if value is None:
        return "null"
    try:
        shown = clip(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError):
        shown = clip(repr(value))
    if isinstance(value, bool):
        return f"a boolean ({shown})"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        return f"a whitespace-only string ({shown})" if not value.strip() else f"a string ({shown})"
    if isinstance(value, int):
        return f"an integer ({shown})"
    if isinstance(value, float):
        return f"a number ({shown})"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} ({shown})"
    if isinstance(value, dict):
        return f"an object ({shown})"
    return f"a {type(value).__name__} ({shown})"


def _show(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter


def mb(n: int) -> str:
    """A size for a message: MB with one decimal, or exact bytes below 0.1 MB (where MB would read 0.0)."""
    return f"{n / 1024**2:.1f} MB" if n >= 1024**2 / 10 else f"{n:,} bytes"


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels deep (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


@dataclass(frozen=True, slots=True)
class Record:
    pos: int  # 1-based line (JSONL) or row (JSON list, CSV, Parquet)
    data: dict[str, Any]


@dataclass
class RecordSource:
    """An opened file: its type, how its records are numbered, and the records."""

    file_type: str  # jsonl, json, csv, tsv, parquet
    unit: str  # "line" or "row"
    gzip: bool
    records: Iterator[Record]


@contextlib.contextmanager
def open_records(
    path: str | Path, max_bytes: int, max_value_bytes: int | None = None, *, batch_rows: int = _PARQUET_BATCH
) -> Iterator[RecordSource]:
    """Open ``path`` and yield a :class:`RecordSource`; checks that fail raise :class:`ImportFileError`.

    ``max_value_bytes`` bounds one decoded value of a Parquet file before it is decoded (text
    formats are bounded by ``max_bytes``, and each value by the importer, as they are read);
    ``batch_rows`` Parquet rows are decoded at a time (a preview that shows five asks for five).
    """
    reader = _Reader(Path(path), max_bytes, max_value_bytes, batch_rows)
    try:
        yield reader.open()
    finally:
        reader.close()


class _Reader:
    def __init__(
        self, path: Path, max_bytes: int, max_value_bytes: int | None = None, batch_rows: int = _PARQUET_BATCH
    ) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes
        self.gz = False
        self.stack = contextlib.ExitStack()

    def close(self) -> None:
        self.stack.close()

    def error(self, line: int | None, field: str | None, detail: str, unit: str = "line") -> ImportFileError:
        return ImportFileError(self.path, line, field, detail, unit)

    # --- opening -------------------------------------------------------------------------------

    def open(self) -> RecordSource:
        path = self.path
        try:
            size = os.path.getsize(path)
            if path.is_dir():
                raise self.error(None, None, "expected a readable file, found a directory")
            with path.open("rb") as f:
                magic = f.read(2)
        except FileNotFoundError:
            raise self.error(
                None, None, "file not found: expected a readable file, found nothing at this path"
            ) from None
        except OSError as e:
            raise self.error(None, None, f"cannot read: expected a readable file, found {e.strerror or e}") from None
        if size > self.max_bytes:
            raise self.error(
                None, None, f"file too large: it is {mb(size)} ({size:,} bytes), over the limit of {mb(self.max_bytes)}"
            )
        self.gz = magic == GZIP_MAGIC
        name = path.name.lower()
        if name.endswith(".gz"):
            if not self.gz:
                raise self.error(
                    None, None, "corrupt gzip: the name ends in .gz but the file lacks the gzip magic bytes"
                )
            name = name[:-3]
        head = self._head()
        file_type = FILE_TYPES.get(Path(name).suffix) or self._sniff(head)
        if file_type == "parquet":
            if not head.startswith(PARQUET_MAGIC):
                raise self.error(None, None, f"not a Parquet file: expected the bytes 'PAR1' first, found {head[:4]!r}")
            return RecordSource(file_type, "row", self.gz, self._parquet())
        self._check_text(head)
        if file_type == "jsonl":
            return RecordSource(file_type, "line", self.gz, self._jsonl())
        if file_type == "json":
            return RecordSource(file_type, "row", self.gz, self._json())
        return RecordSource(file_type, "row", self.gz, self._csv("," if file_type == "csv" else "\t"))

    def _stream(self) -> IO[bytes]:
        """A fresh binary stream of the (decompressed) content, closed with the reader."""
        raw: IO[bytes] = gzip.open(self.path, "rb") if self.gz else self.path.open("rb")  # noqa: SIM115
        return self.stack.enter_context(raw)

    def _corrupt(self, e: BaseException, after: int | None = None) -> ImportFileError:
        where = f" after line {after}" if after else ""
        if self.gz:
            return self.error(None, None, f"truncated or corrupt gzip: the stream breaks off{where} ({clip(str(e))})")
        return self.error(None, None, f"cannot read{where}: {clip(str(e))}")

    def _too_large(self) -> ImportFileError:
        return self.error(
            None, None, f"file too large: the decompressed content passes the limit of {mb(self.max_bytes)}"
        )

    def _head(self) -> bytes:
        with self.path.open("rb") if not self.gz else gzip.open(self.path, "rb") as f:
            try:
                return f.read(_SNIFF)
            except _GZIP_ERRORS as e:
                raise self._corrupt(e) from None

    def _sniff(self, head: bytes) -> str:
        if head.startswith(PARQUET_MAGIC):
            return "parquet"
        start = head.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
        if start == b"[":
            return "json"
        if start == b"{" or not start:
            return "jsonl"
        raise self.error(
            None,
            None,
            "unknown file type: expected a name ending in "
            + ", ".join(sorted(FILE_TYPES))
            + " (optionally .gz), or JSON content starting with '[' or '{'",
        )

    def _check_text(self, head: bytes) -> None:
        """Refuse binary content: a NUL byte, or a start that is mostly not UTF-8 text."""
        hint = ""
        if head.startswith(PARQUET_MAGIC):
            hint = "; it looks like Parquet: name it .parquet"
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            hint = "; it looks like UTF-16 text: save it as UTF-8"
        if b"\x00" in head:
            at = head.index(b"\x00") + 1
            raise self.error(None, None, f"not a text file: found a NUL byte at byte {at}{hint}")
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
        bad = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\f"))
        if text and bad > max(2, len(text) // 10):
            raise self.error(None, None, f"not a text file: {bad} of the first {len(text)} characters are not text")

    # --- text formats ------------------------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line) of the content, never more than ``max_bytes`` in all."""
        stream = self._stream()
        total = n = 0
        while True:
            try:
                raw = stream.readline(self.max_bytes - total + 1)
            except _GZIP_ERRORS as e:
                raise self._corrupt(e, n) from None
            if not raw:
                return
            total += len(raw)
            if total > self.max_bytes:
                raise self._too_large()
            n += 1
            yield n, raw

    def _decode(self, n: int, raw: bytes) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(
                n, None, f"not UTF-8: expected UTF-8 text, found byte 0x{raw[e.start]:02x} at byte {e.start + 1}"
            ) from None
        if "\x00" in text:
            at = text.index("\x00") + 1
            raise self.error(
                n, None, f"found a NUL byte at character {at}: expected text without NUL bytes (binary data?)"
            )
        return text[1:] if n == 1 and text.startswith("\ufeff") else text

    def _jsonl(self) -> Iterator[Record]:
        for n, raw in self._lines():
            text = self._decode(n, raw)
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise self.error(
                    n, None, f"broken JSON: expected a JSON object, found invalid JSON ({e.msg} at column {e.colno})"
                ) from None
            except RecursionError:
                raise self._deep(n) from None
            if not isinstance(obj, dict):
                raise self.error(n, None, f"expected a JSON object, found {describe(obj)}")
            yield Record(n, self._shallow(n, obj))

    def _json(self) -> Iterator[Record]:
        stream = self._stream()
        try:
            data = stream.read(self.max_bytes + 1)
        except _GZIP_ERRORS as e:
            raise self._corrupt(e) from None
        if len(data) > self.max_bytes:
            raise self._too_large()
        data = data.removeprefix(codecs.BOM_UTF8)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise self.error(line, None, f"not UTF-8: expected UTF-8 text, found byte 0x{data[e.start]:02x}") from None
        if not text.strip():
            return
        if "\x00" in text:
            at = text.index("\x00")
            raise self.error(
                text.count("\n", 0, at) + 1, None, "found a NUL byte: expected text without NUL bytes (binary data?)"
            )
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise self.error(e.lineno, None, f"broken JSON: {e.msg} at column {e.colno}") from None
        except RecursionError:
            raise self._deep(None) from None
        if not isinstance(obj, list):
            hint = "; a file with one JSON object per line must be named .jsonl" if isinstance(obj, dict) else ""
            raise self.error(None, None, f"expected a JSON list of objects, found {describe(obj)}{hint}")
        for k, rec in enumerate(obj, start=1):
            if not isinstance(rec, dict):
                raise self.error(k, None, f"expected a JSON object, found {describe(rec)}", "row")
            yield Record(k, self._shallow(k, rec, "row"))

    def _deep(self, pos: int | None, key: str | None = None, unit: str = "line") -> ImportFileError:
        detail = f"JSON nested too deeply: expected at most {MAX_DEPTH} levels of lists and objects, found more"
        return self.error(pos, key, detail, unit)

    def _shallow(self, pos: int, obj: dict[str, Any], unit: str = "line") -> dict[str, Any]:
        """``obj`` if no value nests more than :data:`MAX_DEPTH` levels (so later steps need no deep recursion)."""
        for key, value in obj.items():
            if isinstance(value, dict | list) and too_deep(value, MAX_DEPTH - 1):
                raise self._deep(pos, str(key), unit)
        return obj

    def _csv(self, delimiter: str) -> Iterator[Record]:
        # Raise the module-wide cell size limit (default 128 KiB) so that long responses fit; never lower it.
        csv.field_size_limit(max(csv.field_size_limit(), min(self.max_bytes, 2**31 - 1)))
        lines = (self._decode(n, raw) for n, raw in self._lines())
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        row_no = 0
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise self.error(row_no + 1, None, f"broken CSV: {e} (line {reader.line_num})", "row") from None
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = self._header(row, delimiter)
                continue
            row_no += 1
            if len(row) != len(header):
                raise self.error(
                    row_no,
                    None,
                    f"wrong number of columns: expected {len(header)} (as in the header), "
                    f"found {len(row)} (line {start} of the file)",
                    "row",
                )
            yield Record(row_no, dict(zip(header, row, strict=True)))

    def _header(self, row: list[str], delimiter: str) -> list[str]:
        header = [h.strip() for h in row]
        if len(header) == 1:
            for other in (";", "\t", "|", ","):
                if other != delimiter and other in header[0]:
                    shown, expected = (_show(other), _show(delimiter))
                    raise self.error(
                        None,
                        None,
                        f"the header is one column {clip(header[0])!r} that looks like a '{shown}'-delimited file; "
                        f"expected '{expected}'-separated columns "
                        "(name comma-separated files .csv and tab-separated ones .tsv)",
                    )
        for k, h in enumerate(header, start=1):
            if not h:
                raise self.error(None, None, f"the header's column {k} has no name: expected a name for every column")
            if h in header[: k - 1]:
                raise self.error(None, None, f"the header names column {h!r} twice: expected unique column names")
        return header

    # --- Parquet -----------------------------------------------------------------------------

    def _parquet(self) -> Iterator[Record]:
        """Parquet by small record batches, its decoded size bounded before and while decoding.

        Parquet compresses well enough that a file of a few KB can decode to hundreds of MB. The
        footer's uncompressed sizes are checked first (the whole file against ``max_bytes``; a
        column chunk whose values average more than ``max_value_bytes`` must hold a value over it);
        then each batch's text columns are measured before they become Python strings (a value
        over ``max_value_bytes`` is refused with its row and column, and the decoded total is
        counted against ``max_bytes``, since dictionary encoding hides repeats from the footer).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        source: Path = self._inflate() if self.gz else self.path
        try:
            pf = pq.ParquetFile(source)
            self._check_parquet_sizes(pf.metadata)
            n = decoded = 0
            for batch in pf.iter_batches(batch_size=self.batch_rows):
                decoded += batch.nbytes
                if decoded > self.max_bytes:
                    raise self.error(
                        None, None, f"file too large: its content decodes past the limit of {mb(self.max_bytes)}"
                    )
                if self.max_value_bytes is not None:
                    for name, col in zip(batch.schema.names, batch.columns, strict=True):
                        if (
                            pa.types.is_string(col.type)
                            or pa.types.is_binary(col.type)
                            or pa.types.is_large_string(col.type)
                        ):
                            lengths = pc.binary_length(col)
                            top = pc.max(lengths).as_py()
                            if top is not None and top > self.max_value_bytes:
                                at = pc.index(lengths, top).as_py()
                                raise self.error(
                                    n + at + 1,
                                    name,
                                    f"value too large: it decodes to {mb(top)}, over the per-value limit of "
                                    f"{mb(self.max_value_bytes)}",
                                    "row",
                                )
                for rec in batch.to_pylist():
                    n += 1
                    yield Record(n, rec)
        except (pa.ArrowException, OSError) as e:
            raise self.error(
                None,
                None,
                f"not a readable Parquet file: expected a complete Parquet file, found it corrupt ({clip(str(e))})",
            ) from None

    def _check_parquet_sizes(self, md: Any) -> None:
        total = sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
        if total > self.max_bytes:
            raise self.error(
                None,
                None,
                f"file too large: it decodes to {mb(total)} ({total:,} bytes), over the limit of {mb(self.max_bytes)}",
            )
        if self.max_value_bytes is None:
            return
        first = 1
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for c in range(rg.num_columns):
                chunk = rg.column(c)
                if rg.num_rows and chunk.total_uncompressed_size > self.max_value_bytes * rg.num_rows:
                    raise self.error(
                        None,
                        chunk.path_in_schema,
                        f"value too large: rows {first}-{first + rg.num_rows - 1} of this column decode to "
                        f"{mb(chunk.total_uncompressed_size)}, more than {mb(self.max_value_bytes)} a value on "
                        "average, so at least one value is over the per-value limit",
                    )
            first += rg.num_rows

    def _inflate(self) -> Path:
        """Decompress the gzip file into a temporary file (removed on close), counting the bytes."""
        fd, name = tempfile.mkstemp(suffix=".parquet", prefix="rrm-import-")
        self.stack.callback(os.unlink, name)
        total = 0
        with os.fdopen(fd, "wb") as out:
            stream = self._stream()
            while True:
                try:
                    chunk = stream.read(1024**2)
                except _GZIP_ERRORS as e:
                    raise self._corrupt(e) from None
                if not chunk:
                    break
                total += len(chunk)
                if total > self.max_bytes:
                    raise self._too_large()
                out.write(chunk)
        return Path(name)
