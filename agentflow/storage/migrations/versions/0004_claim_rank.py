"""Claim order held by an index: runs.priority_aging, the computed runs.claim_rank, a partial
index of queued runs on it and one of delayed runs on available_at (replacing the
(status, available_at) index)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies: a migration must not change when the models do.
_QUEUED = "status = 'queued'"
_DELAYED = "status = 'delayed'"
_RANK = "available_at - priority * priority_aging"


def upgrade() -> None:
    # Postgres computes the column on write (STORED); SQLite can only add a VIRTUAL one, which
    # it computes on read and keeps in the index.
    stored = True if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "agentflow_runs",
        sa.Column("priority_aging", sa.Float(), nullable=False, server_default="60"),
    )
    op.add_column(
        "agentflow_runs",
        sa.Column("claim_rank", sa.Float(), sa.Computed(_RANK, persisted=stored), nullable=True),
    )
    # The claim query was the only reader of the old (status, available_at) index.
    op.drop_index("ix_agentflow_runs_claim", table_name="agentflow_runs")
    op.create_index(
        "ix_agentflow_runs_claim_rank",
        "agentflow_runs",
        ["claim_rank", "available_at"],
        postgresql_where=sa.text(_QUEUED),
        sqlite_where=sa.text(_QUEUED),
    )
    op.create_index(
        "ix_agentflow_runs_delayed",
        "agentflow_runs",
        ["available_at"],
        postgresql_where=sa.text(_DELAYED),
        sqlite_where=sa.text(_DELAYED),
    )


def downgrade() -> None:
    op.drop_index("ix_agentflow_runs_delayed", table_name="agentflow_runs")
    op.drop_index("ix_agentflow_runs_claim_rank", table_name="agentflow_runs")
    op.create_index("ix_agentflow_runs_claim", "agentflow_runs", ["status", "available_at"])
    with op.batch_alter_table("agentflow_runs") as batch_op:
        batch_op.drop_column("claim_rank")
        batch_op.drop_column("priority_aging")
