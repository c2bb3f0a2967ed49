"""Malformed uploads as the user meets them: the Batch tab's handlers and ``rrm-ui import``.

Every case of the catalogue is uploaded the way the browser does it (Gradio's /upload route
saves the file as ``<upload dir>/<random folder>/<the file's name, cleaned>`` and hands the
handler that path), previewed, imported, and then imported again with the command line. Each
must be refused with a message that names the file the user chose (never the server's upload
folder), the line or row and the field where there is one, and what was expected; the
database must be unchanged to the last row (every table's row count and a digest of its rows,
SQLite's autoincrement counters included). No model is loaded: uploads need none.

tests/test_importers.py checks the same errors at the importer level; docs/import-export.md
lists the catalogue ("What a bad file gets").
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import html
import io
import json
import random
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gradio_client.utils import strip_invalid_filename_characters

from rrm_ui.config import Settings
from rrm_ui.domain import Choice
from rrm_ui.io.importers import ExternalVerdicts
from rrm_ui.services import open_repository, uploads
from rrm_ui.services.datasets import import_file
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.runtime import Runtime
from rrm_ui.ui.context import AppContext
from rrm_ui.ui.tabs import batch
from tests.test_cli import rrm_ui
from tests.test_ui_handlers import Req, shown

LIMIT = 64 * 1024  # the upload limit of the size cases (MAX_UPLOAD_BYTES is 512 MB)


# --- the app, its database, the browser ---------------------------------------------------------


@dataclass
class App:
    ctx: AppContext
    db: Path
    url: str
    uploads: Path  # the web server's upload folder


@contextlib.contextmanager
def make_app(folder: Path) -> Iterator[App]:
    """An app context over a fresh SQLite file, without a model (its path does not exist)."""
    db = folder / "rrm.db"
    settings = Settings(backend="transformers", model=str(folder / "no-model"), database_url=f"sqlite:///{db}",
                        hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    try:
        (folder / "uploads").mkdir()
        yield App(AppContext(rt, jobs, login=False), db, settings.database_url, folder / "uploads")
    finally:
        jobs.shutdown()
        rt.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app with one data set already stored: items, two annotators' labels and an external run."""
    folder = tmp_path_factory.mktemp("faults")
    with make_app(folder) as a:
        seed = folder / "seed.csv"
        seed.write_text("id,query,response_a,response_b,ann\n1,Capital of France?,Paris,Lyon,A\n2,2+2?,5,4,B\n")
        verdicts = folder / "judge.jsonl"
        verdicts.write_text('{"id": "1", "verdict": "A"}\n{"id": "2", "verdict": "B"}\n')
        import_file(a.ctx.repo, seed, name="seed", annotator_columns={"ann": "alice"},
                    annotator_labels={"A": Choice.A, "B": Choice.B},
                    external=ExternalVerdicts(verdicts, "other-judge"))  # fmt: skip
        stored = snapshot(a.db)
        assert all(stored[t][0] for t in ("datasets", "items", "labels", "annotators", "runs", "item_results"))
        yield a


def snapshot(db: Path) -> dict[str, tuple[int, str]]:
    """Every table's row count and a digest of its rows."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {}
        for table in tables:
            rows = sorted(repr(r) for r in con.execute(f'SELECT * FROM "{table}"'))
            out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def browser_upload(root: Path, user_name: str, content: bytes) -> Path:
    """Save ``content`` as Gradio's /upload route does: a fresh folder, the browser's file name cleaned."""
    name = strip_invalid_filename_characters(Path(user_name).name)
    folder = root / secrets.token_hex(20)
    folder.mkdir()
    path = folder / name
    path.write_bytes(content)
    return path


def seen(markdown: str) -> str:
    """A handler's Markdown as the user reads it: escapes and entities undone."""
    return html.unescape(shown(markdown))


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# --- file contents ------------------------------------------------------------------------------


def pair(k: int = 0, **changes: object) -> dict:
    return {"query": f"Question {k}?", "response_a": f"Answer {k}a.", "response_b": f"Answer {k}b.", **changes}


def jsonl(*rows: dict | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def listwise(**changes: object) -> dict:
    return {"query": "Rank these.", "responses": ["One.", "Two."], **changes}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def parquet(**columns: list) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def noise_lines(n: int) -> bytes:
    """JSONL that gzip cannot shrink much (random text), so that cutting the .gz cuts the records."""
    rng = random.Random(0)
    return jsonl(*(pair(k, response_a=rng.randbytes(2000).hex()) for k in range(n)))


GOOD_PARQUET = {"query": ["q1", "q2"], "response_a": ["a", "a"], "response_b": ["b", "b"]}


@dataclass(frozen=True)
class Fault:
    id: str
    name: str  # the file's name on the user's machine
    content: Callable[[], bytes]
    says: tuple[str, ...]  # what the message must say besides the file's name: where, which field, what was expected
    form: tuple[str, str, str] = ("", "", "")  # the Batch tab's preset, mapping and label values
    cli: tuple[str, ...] = ()  # the same for rrm-ui import
    early: bool = False  # the preview (the first rows) already shows the problem
    limit: int | None = None  # the upload limit for this case; {size} in ``says`` is the file's size


FAULTS = [
    # JSON
    Fault("broken-json", "pairs.jsonl", lambda: jsonl(pair(1), '{"query": "q2", "response_a": "a",'),
          ("line 2", "broken JSON", "expected a JSON object"), early=True),
    Fault("broken-json-list", "pairs.json",
          lambda: b'[\n  {"query": "q", "response_a": "a", "response_b": "b"},\n  {"query": "q2" "response_a": "a"}\n]',
          ("line 3", "broken JSON", "Expecting ',' delimiter"), early=True),
    Fault("json-object-not-list", "one.json", lambda: json.dumps(pair()).encode(),
          ("expected a JSON list of objects", "found an object", "named .jsonl"), early=True),
    Fault("json-list-non-object", "list.json", lambda: json.dumps([pair(1), 5]).encode(),
          ("row 2", "expected a JSON object", "found an integer (5)"), early=True),
    Fault("deeply-nested", "deep.jsonl", lambda: jsonl(pair(1), '{"query": ' + nested(100_000) + "}"),
          ("line 2", "JSON nested too deeply", "expected at most 100 levels"), early=True),
    Fault("nested-extra-field", "deep2.jsonl", lambda: jsonl(pair(1, meta=json.loads(nested(500)))),
          ("line 1", "field 'meta'", "JSON nested too deeply", "expected at most 100 levels"), early=True),
    Fault("huge-line-no-newline", "one-line.jsonl",
          lambda: b'{"query": "q", "response_a": "' + b"x" * 3_000_000,
          ("line 1", "broken JSON", "Unterminated string"), early=True),
    Fault("bom-mid-file", "joined.jsonl", lambda: jsonl(pair(1), pair(2), "\ufeff" + json.dumps(pair(3))),
          ("line 3", "broken JSON", "Unexpected UTF-8 BOM"), early=True),
    # wrong types, missing and empty fields
    # (a number or boolean where text is expected is read as its text: tests/test_public_imports.py)
    Fault("response-a-object", "types.jsonl", lambda: jsonl(pair(1), pair(2, response_a={"text": 5})),
          ("line 2", "field 'response_a'", "expected a string", "found an object")),
    Fault("response-b-null", "nulls.jsonl", lambda: jsonl(pair(1, response_b=None)),
          ("line 1", "field 'response_b'", "expected a string", "found null")),
    Fault("responses-lists", "lists.jsonl", lambda: jsonl(listwise(responses=[[1], "two"])),
          ("line 1", "field 'responses[0]'", "expected a string", "found a list of 1")),
    Fault("fewer-than-two-responses", "lists.jsonl", lambda: jsonl(listwise(), listwise(responses=["Only one."])),
          ("line 2", "field 'responses'", "expected a list of at least 2 strings", "found a list of 1")),
    Fault("missing-field", "pairs.jsonl", lambda: jsonl(pair(1), pair(2), {"query": "q3", "response_a": "a"}),
          ("line 3", "field 'response_b'", "expected a non-empty string", "field missing")),
    Fault("empty-query", "pairs.jsonl", lambda: jsonl(pair(1), pair(2, query="")),
          ("line 2", "field 'query'", "expected a non-empty string", "found an empty string")),
    Fault("id-a-list", "ids.jsonl", lambda: jsonl(pair(1, id=[1, 2])),
          ("line 1", "field 'id'", "expected a string or an integer", "found a list of 2")),
    Fault("bad-ranking", "ranked.jsonl", lambda: jsonl(listwise(ranking=[0, 0])),
          ("line 1", "field 'ranking'", "expected each response index 0..1 once", "found a list of 2")),
    Fault("duplicate-ids", "dups.jsonl", lambda: jsonl(pair(1, id="x"), pair(2, id="y"), pair(3, id="x")),
          ("line 3", "field 'id'", "expected a unique id", "'x' twice: line 1 and line 3")),
    Fault("unknown-format", "alpaca.jsonl", lambda: jsonl({"instruction": "q", "output": "a"}),
          ("unknown format", "found the fields 'instruction', 'output'", "expected the fields of a known format"),
          early=True),
    # labels
    Fault("unknown-label", "labels.jsonl", lambda: jsonl(pair(1, label="A"), pair(2, label="C")),
          ("line 2", "field 'label'", "'C' is not a label", "expected A, B, tie or both_bad")),
    Fault("numeric-label-no-codes", "labels.jsonl", lambda: jsonl(pair(1, label=1)),
          ("line 1", "field 'label'", "numeric code", "never guessed", "1=A,2=B")),
    Fault("label-outside-mapping", "llmbar.json",
          lambda: json.dumps([{"input": "q", "output_1": "a", "output_2": "b", "label": k} for k in (1, 3)]).encode(),
          ("row 2", "field 'label'", "'3' is not in the label mapping 1=A,2=B", "expected one of 1, 2"),
          form=("llmbar", "", ""), cli=("--preset", "llmbar")),
    Fault("mapped-field-missing", "farm.jsonl",
          lambda: jsonl({"instruction": "q", "output_1": "a", "output_2": "b"}, {"instruction": "q2", "output_1": "a"}),
          ("line 2", "field 'output_2'", "expected a string (a response)", "field missing"),
          form=("", "query=instruction\nresponses=output_1,output_2", ""),
          cli=("--map", "query=instruction", "--map", "responses=output_1,output_2")),
    # empty and not text at all
    Fault("empty-file", "empty.jsonl", lambda: b"", ("empty file", "expected at least one record"), early=True),
    Fault("blank-lines-only", "blank.jsonl", lambda: b"\n\n   \n\n", ("expected at least one record",), early=True),
    Fault("empty-json-list", "empty.json", lambda: b"[]", ("expected at least one record",), early=True),
    Fault("binary-file", "photo.jsonl", lambda: bytes(range(128, 256)) * 64,
          ("not a text file", "characters are not text"), early=True),
    Fault("png-named-csv", "image.csv", lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
          ("not a text file", "NUL byte at byte 9"), early=True),
    Fault("utf-16", "pairs.jsonl", lambda: jsonl(pair(1)).decode().encode("utf-16"),
          ("not a text file", "looks like UTF-16 text", "save it as UTF-8"), early=True),
    Fault("not-utf-8", "latin1.csv", lambda: "query,response_a,response_b\nq,a,b\ncafé,a,b\n".encode("latin-1"),
          ("line 3", "not UTF-8", "expected UTF-8 text", "byte 0xe9"), early=True),
    Fault("nul-late-in-csv", "many.csv",
          lambda: ("query,response_a,response_b\n" + "q,a,b\n" * 2000 + "q\0x,a,b\n").encode(),
          ("line 2002", "NUL byte", "expected text without NUL bytes")),
    Fault("nul-escaped-in-json", "zero.jsonl", lambda: jsonl(pair(1, query="before\u0000after")),
          ("line 1", "field 'query'", "expected text without NUL characters", "at character 7")),
    # CSV
    Fault("csv-wrong-delimiter", "semicolons.csv", lambda: b"query;response_a;response_b\nq;a;b\n",
          ("looks like a ';'-delimited file", "expected ','-separated columns"), early=True),
    Fault("csv-column-count", "columns.csv", lambda: b"query,response_a,response_b\nq,a,b\nq2,a\nq3,a,b\n",
          ("row 2", "wrong number of columns", "expected 3", "found 2"), early=True),
    Fault("csv-unclosed-quote", "quotes.csv", lambda: b'query,response_a,response_b\nq,a,b\nq2,"a,b\n',
          ("row 2", "broken CSV", "unexpected end of data"), early=True),
    Fault("unknown-extension", "notes.txt", lambda: b"query,response_a,response_b\nq,a,b\n",
          ("unknown file type", "expected a name ending in", ".jsonl"), early=True),
    # Parquet and gzip
    Fault("parquet-not-parquet", "pairs.parquet", lambda: jsonl(pair(1)),
          ("not a Parquet file", "expected the bytes 'PAR1' first"), early=True),
    Fault("parquet-truncated", "cut.parquet", lambda: parquet(**GOOD_PARQUET)[:300],
          ("not a readable Parquet file", "expected a complete Parquet file"), early=True),
    Fault("parquet-wrong-type", "types.parquet", lambda: parquet(**{**GOOD_PARQUET, "response_a": [[1], [2]]}),
          ("row 1", "field 'response_a'", "expected a string", "found a list of 1")),
    Fault("gzip-not-gzip", "pairs.jsonl.gz", lambda: jsonl(pair(1)),
          ("corrupt gzip", "lacks the gzip magic bytes"), early=True),
    Fault("gzip-truncated", "pairs.jsonl.gz", lambda: gzip.compress(noise_lines(100))[:150_000],
          ("truncated or corrupt gzip", "the stream breaks off after line")),
    # sizes
    Fault("all-or-nothing-last-of-1000", "big.jsonl",
          lambda: jsonl(*(pair(k) for k in range(1000)), {"query": "last", "response_a": "a"}),
          ("line 1001", "field 'response_b'", "field missing")),
    Fault("response-5-mb", "long.jsonl", lambda: jsonl(pair(1), pair(2, response_b="y" * 5 * 1024**2)),
          ("line 2", "field 'response_b'", "response too large", "5.0 MB (5,242,880 bytes)", "limit of 1.0 MB")),
    Fault("over-the-size-limit", "big.jsonl", lambda: jsonl(*(pair(k) for k in range(1500))),
          ("file too large", "({size:,} bytes)", f"over the limit of {LIMIT:,} bytes"), early=True, limit=LIMIT),
    Fault("gzip-inflates-over-the-limit", "bomb.jsonl.gz",
          lambda: gzip.compress(jsonl(pair(1, response_a="z" * 10 * LIMIT))),
          ("file too large", f"decompressed content passes the limit of {LIMIT:,} bytes"), early=True, limit=LIMIT),
    # names
    Fault("path-traversal-name", "../../etc/passwd.jsonl", lambda: jsonl('{"query": '),
          ("line 1", "broken JSON"), early=True),
    Fault("odd-unicode-name", "données ✓ \u202e\x07 \U0001f600 [1].jsonl", lambda: jsonl(pair(1, response_a=[])),
          ("line 1", "field 'response_a'", "expected a string", "found a list of 0")),
]  # fmt: skip


def test_the_catalogue_is_long_enough() -> None:
    assert len(FAULTS) >= 20 and len({f.id for f in FAULTS}) == len(FAULTS)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_a_bad_upload_is_refused_with_a_clear_message_and_nothing_stored(
    app: App, fault: Fault, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = fault.content()
    if fault.limit is not None:
        assert len(content) > fault.limit or fault.name.endswith(".gz")
        monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", fault.limit)
    says = [s.format(size=len(content)) for s in fault.says]
    path = browser_upload(app.uploads, fault.name, content)
    assert path.name == fault.name or fault.id.endswith("-name")
    # the name the user sees: the one they chose, as Gradio kept it, a text-direction override made inert
    name = path.name.replace("\u202e", "\ufffd")
    before = snapshot(app.db)

    # the Batch tab: preview, then import
    view = batch.inspect_upload(str(path))
    preview = seen(view.summary)
    assert str(app.uploads) not in preview and path.parent.name not in preview
    if fault.early:
        assert "Cannot import" in preview and name in preview, preview
    message = seen(batch.import_file(app.ctx, Req(), str(path), "", *fault.form))
    assert message.startswith("**Not imported** (nothing was stored)"), message
    assert name in message, message
    for part in says:
        assert part in message, (part, message)
    assert str(app.uploads) not in message and path.parent.name not in message
    assert "\u202e" not in message + preview
    assert snapshot(app.db) == before

    # the command line, on the same file and database
    limit = ["--max-mb", str(fault.limit / 1024**2)] if fault.limit is not None else []
    proc = rrm_ui("import", str(path), "--db", app.url, *fault.cli, *limit, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "nothing was imported" in proc.stderr
    assert str(path) in proc.stderr, proc.stderr  # the path as the user typed it
    for part in says:
        assert part in proc.stderr, (part, proc.stderr)
    assert snapshot(app.db) == before


def test_a_path_traversal_name_with_good_content_is_stored_under_a_plain_name(tmp_path: Path) -> None:
    """The name the front end passes may hold directories: the data set name never does, nothing is written there."""
    content = jsonl(pair(1), pair(2))
    evil = "../../etc/passwd.jsonl"
    with make_app(tmp_path / "app") as a:
        outside = files_under(tmp_path)
        temp = a.uploads / "tmp4k2j9x.jsonl"  # saved under a server-side name, the browser's name passed along
        temp.write_bytes(content)
        p = uploads.preview(temp, evil)
        assert p.problem is None and p.format == "pairwise" and p.suggested_name == "passwd"
        info = uploads.import_upload(a.ctx.repo, temp, file_name=evil)
        assert info.name == "passwd" and info.n_items == 2
        assert "/" not in info.name and ".." not in info.name
        # the same name, bad content: refused, the name shown as given, the temporary path never
        bad = a.uploads / "tmp7q1w0z.jsonl"
        bad.write_bytes(jsonl(pair(1), pair(2, response_b=[3])))
        before = snapshot(a.db)
        with pytest.raises(ValueError) as refused:
            uploads.import_upload(a.ctx.repo, bad, file_name=evil)
        assert str(refused.value).startswith(f"{evil}, line 2, field 'response_b': expected a string")
        assert str(bad) not in str(refused.value) and "tmp7q1w0z" not in str(refused.value)
        assert snapshot(a.db) == before
        # through the Batch tab: the browser sends the name, Gradio keeps only its last part
        path = browser_upload(a.uploads, evil, content)
        assert path.parent.parent == a.uploads and path.name == "passwd.jsonl"
        assert batch.inspect_upload(str(path)).name == "passwd"
        message = seen(batch.import_file(a.ctx, Req(), str(path), "", "", "", ""))
        assert "exists already" in message  # the plain name "passwd" again, not a path
        assert files_under(tmp_path) - outside == {temp, bad, path.parent, path}
        assert [d.name for d in a.ctx.repo.datasets()] == ["passwd"]
    # the command line: a real path with ../ in it; the data set is named after the file alone
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd.jsonl").write_bytes(content)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    proc = rrm_ui("import", str(tmp_path / "x" / "y" / evil), "--db", db, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "as data set 'passwd'" in proc.stdout
    assert [d.name for d in open_repository(Settings(database_url=db)).datasets()] == ["passwd"]


def test_control_characters_in_a_name_are_shown_inert(app: App) -> None:
    """Gradio drops control characters from names; a name passed some other way has them replaced."""
    temp = app.uploads / "tmp0c7r1a.jsonl"
    temp.write_bytes(jsonl(pair(1, query={"text": 7})))
    odd = "red\x1b[31m\u202etxt.exe.jsonl"
    p = uploads.preview(temp, odd)
    assert p.file_name == "red\ufffd[31m\ufffdtxt.exe.jsonl" and p.suggested_name == "red-31m-txt.exe"
    before = snapshot(app.db)
    with pytest.raises(ValueError) as refused:
        uploads.import_upload(app.ctx.repo, temp, file_name=odd)
    assert str(refused.value) == (
        "red\ufffd[31m\ufffdtxt.exe.jsonl, line 1, field 'query': expected a string, found an object ({\"text\": 7})"
    )
    assert snapshot(app.db) == before


def test_a_leading_bom_crlf_and_an_odd_name_are_not_faults(app: App) -> None:
    """The refusals are not over-eager: a UTF-8 BOM, Windows line ends and a unicode name import."""
    content = '\ufeffid,query,response_a,response_b\r\n1,q,a,b\r\n2,q2,"a, with comma",b\r\n'.encode()
    path = browser_upload(app.uploads, "Excel export ✓ (2).csv", content)
    message = seen(batch.import_file(app.ctx, Req(), str(path), "", "", "", ""))
    assert message.startswith("Imported **Excel-export-2**: 2 items."), message
    info = app.ctx.repo.dataset("Excel-export-2")
    assert info is not None and info.format == "pairwise"
