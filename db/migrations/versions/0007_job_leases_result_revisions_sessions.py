"""Several app processes on one database: an app worker's job lease has an expiry, an item's results
in a run are numbered (one first result per run and item, enforced), login sessions' owners are shared.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("item_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    # earlier rows of a (run, item) are its history: number them in the order they were stored
    op.execute(
        "UPDATE item_results SET revision = (SELECT COUNT(*) FROM item_results r WHERE r.run_id = "
        "item_results.run_id AND r.item_id = item_results.item_id AND r.id < item_results.id)"
    )
    op.create_index("uq_item_results_run_item_revision", "item_results", ["run_id", "item_id", "revision"],
                    unique=True)  # fmt: skip
    op.create_table(
        "login_sessions",
        sa.Column("session_hash", sa.String(length=200), primary_key=True),
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_login_sessions_created_at", "login_sessions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_login_sessions_created_at", table_name="login_sessions")
    op.drop_table("login_sessions")
    op.drop_index("uq_item_results_run_item_revision", table_name="item_results")
    with op.batch_alter_table("item_results", schema=None) as batch_op:
        batch_op.drop_column("revision")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
