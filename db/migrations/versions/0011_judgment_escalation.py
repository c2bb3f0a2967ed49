"""Adaptive escalation: a judgment run with a thinking budget raised above its run's ``max_tokens``
(``Compute.escalate_to``, its pair still undecided) stores that budget (``escalated_to``; NULL otherwise).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("judgments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalated_to", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgments", schema=None) as batch_op:
        batch_op.drop_column("escalated_to")
