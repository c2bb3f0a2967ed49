"""Scalar reward models: a judgment of the ``scalar-rm`` format stores the score of response a and of
response b (``score_a``, ``score_b``; NULL for every generative judgment).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("judgments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("score_a", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("score_b", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgments", schema=None) as batch_op:
        batch_op.drop_column("score_b")
        batch_op.drop_column("score_a")
