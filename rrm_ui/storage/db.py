"""Database engines and migrations.

SQLite (the default): WAL journal (readers never block the writer), a busy timeout, foreign
keys on, and ``BEGIN IMMEDIATE`` for write transactions so that two writers queue on the
busy timeout instead of failing with "database is locked" when a read lock is upgraded.
PostgreSQL (or any SQLAlchemy URL) is used as it is.

Migrations live in ``db/migrations`` (Alembic); :func:`upgrade` applies them and runs at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).resolve().parents[2] / "db" / "migrations"
BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                               **kwargs)  # fmt: skip

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's begin event below issues BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("rrm_write") else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


#: the key of the PostgreSQL advisory lock that migrations run under (any app of this schema takes it)
MIGRATION_LOCK = 0x72726D5F7569  # "rrm_ui"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (idempotent), one process at a time.

    Several app processes starting on an empty database all run this: on PostgreSQL under a
    transaction-level advisory lock (``pg_advisory_xact_lock``; the others wait, then find the
    schema current and do nothing); SQLite's write lock serialises the migrations' DDL already.
    """
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.execution_options(rrm_write=True).begin() as conn:  # SQLite: BEGIN IMMEDIATE
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's filter for comparing the models with a database: leaves out the trigram search indexes
    that migration 0009 makes on PostgreSQL where the role may create ``pg_trgm`` (not in the models:
    SQLite has none, and neither has a PostgreSQL that refused the extension)."""
    return not (type_ == "index" and reflected and compare_to is None and (name or "").endswith("_trgm"))
