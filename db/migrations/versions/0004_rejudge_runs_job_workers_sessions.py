"""Re-judge runs know the run they re-examine; one active job per run in the database, jobs know
their worker and its heartbeat (rrm-ui judge holds a job too); accounts have a session epoch.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'running', 'paused')"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("parent_run_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_runs_parent_run_id_runs", "runs", ["parent_run_id"], ["id"])
    with op.batch_alter_table("annotators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    # Before the index: a run that got two active jobs (the old check-then-insert raced) keeps its
    # newest; the older ones are failed with a message saying why.
    op.execute(
        "UPDATE jobs SET status = 'failed', message = 'a second active job of the same run; "
        "the newest one was kept (migration 0004)' "
        f"WHERE {ACTIVE} AND id < (SELECT MAX(j.id) FROM jobs j WHERE j.run_id = jobs.run_id AND j.{ACTIVE})"
    )
    op.create_index("uq_jobs_one_active_per_run", "jobs", ["run_id"], unique=True,
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_jobs_one_active_per_run", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("worker")
    with op.batch_alter_table("annotators", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_runs_parent_run_id_runs", type_="foreignkey")
        batch_op.drop_column("parent_run_id")
        batch_op.drop_column("origin")
