"""Per-criterion labels: a data set may name a few criteria (helpfulness, harmlessness, ...), each
labelled A / B / tie per pair, apart from the overall label.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("criteria", sa.JSON(), nullable=True))
    op.create_table(
        "criterion_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("pair_i", sa.Integer(), nullable=False),
        sa.Column("pair_j", sa.Integer(), nullable=False),
        sa.Column("criterion", sa.String(length=50), nullable=False),
        sa.Column("choice", sa.String(length=10), nullable=False),
        sa.Column("guideline_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("criterion_labels", schema=None) as batch_op:
        batch_op.create_index("ix_criterion_labels_item_pair", ["item_id", "pair_i", "pair_j"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("criterion_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_criterion_labels_item_pair")
    op.drop_table("criterion_labels")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("criteria")
