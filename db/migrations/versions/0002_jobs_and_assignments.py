"""Jobs know their owner, counters for tokens and active time; the annotation queue's claims.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("bracket_seed", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("tokens", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("active_s", sa.Float(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_jobs_owner_id"), ["owner_id"], unique=False)
        batch_op.create_foreign_key("fk_jobs_owner_id_annotators", "annotators", ["owner_id"], ["id"])

    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "annotator_id"),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assignments_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_assignments_annotator_id"), ["annotator_id"], unique=False)


def downgrade() -> None:
    op.drop_table("assignments")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_jobs_owner_id_annotators", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_jobs_owner_id"))
        batch_op.drop_column("active_s")
        batch_op.drop_column("tokens")
        batch_op.drop_column("bracket_seed")
        batch_op.drop_column("owner_id")
