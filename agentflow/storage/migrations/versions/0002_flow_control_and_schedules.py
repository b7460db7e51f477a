"""flow control and schedules

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agentflow_schedules",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("cron", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("payload", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("missed", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("declared", sa.Boolean(), nullable=False),
        sa.Column("next_tick_at", sa.Float(), nullable=False),
        sa.Column("last_tick_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentflow_schedules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agentflow_schedules_due", ["paused", "next_tick_at"], unique=False
        )

    with op.batch_alter_table("agentflow_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("started_runs", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("errors", sqlmodel.sql.sqltypes.AutoString(), nullable=True))

    with op.batch_alter_table("agentflow_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "concurrency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True
            )
        )
        batch_op.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("schedule_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(sa.Column("scheduled_at", sa.Float(), nullable=True))
        batch_op.create_index("ix_agentflow_runs_expiry", ["status", "expires_at"], unique=False)
        batch_op.create_index("ix_agentflow_runs_key", ["concurrency_key", "status"], unique=False)
        batch_op.create_index(
            "ix_agentflow_runs_queue_started", ["queue", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("agentflow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_runs_queue_started")
        batch_op.drop_index("ix_agentflow_runs_key")
        batch_op.drop_index("ix_agentflow_runs_expiry")
        batch_op.drop_column("scheduled_at")
        batch_op.drop_column("schedule_id")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("concurrency_limit")
        batch_op.drop_column("concurrency_key")

    with op.batch_alter_table("agentflow_events", schema=None) as batch_op:
        batch_op.drop_column("errors")
        batch_op.drop_column("started_runs")

    with op.batch_alter_table("agentflow_schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_schedules_due")

    op.drop_table("agentflow_schedules")
