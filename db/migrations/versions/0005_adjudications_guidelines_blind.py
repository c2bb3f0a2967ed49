"""Adjudications (a reviewer's final label of a pair, append-only), versioned labelling guidelines per
data set, the guideline version each label was made under, and a per-data-set "blind to each other"
setting.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "adjudications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("pair_i", sa.Integer(), nullable=False),
        sa.Column("pair_j", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.ForeignKeyConstraint(["reviewer_id"], ["annotators.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("adjudications", schema=None) as batch_op:
        batch_op.create_index("ix_adjudications_item_pair", ["item_id", "pair_i", "pair_j"], unique=False)
        batch_op.create_index(batch_op.f("ix_adjudications_reviewer_id"), ["reviewer_id"], unique=False)
    op.create_table(
        "guidelines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["annotators.id"]),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "version"),
    )
    with op.batch_alter_table("guidelines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guidelines_dataset_id"), ["dataset_id"], unique=False)
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guideline_version", sa.Integer(), nullable=True))
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blind", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("blind")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("guideline_version")
    with op.batch_alter_table("guidelines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guidelines_dataset_id"))
    op.drop_table("guidelines")
    with op.batch_alter_table("adjudications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adjudications_reviewer_id"))
        batch_op.drop_index("ix_adjudications_item_pair")
    op.drop_table("adjudications")
