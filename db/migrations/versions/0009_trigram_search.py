"""PostgreSQL: trigram indexes for the explorer's text search (``ILIKE '%text%'`` on queries and traces).

``AnalyticsStore.search_items`` matches a text anywhere in an item's query, its responses, and every
reasoning trace and answer. Without an index that is a scan of every trace. With the ``pg_trgm``
extension, GIN trigram indexes on ``items.query``, ``judgments.reasoning`` and ``judgments.answer``
serve ``ILIKE`` patterns of three characters or more. The responses are JSON, searched as text
(``CAST(responses AS TEXT)``): not indexed, they are one row per item, not per sample.

Creating an extension needs a role allowed to (a superuser, or one with CREATE on the database in
PostgreSQL 13+ for trusted extensions such as pg_trgm). Where it is refused the upgrade goes on without
the indexes (a warning says so) and search works as before. SQLite: nothing to do.

Revision ID: 0009
Revises: 0008
"""

import logging

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

INDEXES = {  # name -> (table, column)
    "ix_items_query_trgm": ("items", "query"),
    "ix_judgments_reasoning_trgm": ("judgments", "reasoning"),
    "ix_judgments_answer_trgm": ("judgments", "answer"),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():  # a refusal must not abort the migration's transaction
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # noqa: BLE001 - any refusal: go on without the indexes
        log.warning("pg_trgm could not be created (%s): text search works without trigram indexes", exc)
        return
    for name, (table, column) in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({column} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
