"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agentflow_attempt_errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("run_attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("step_attempt", sa.Integer(), nullable=True),
        sa.Column("error_type", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("message", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("traceback", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentflow_attempt_errors", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_attempt_errors_run", ["run_id", "id"], unique=False)

    op.create_table(
        "agentflow_events",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("payload", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("resumed_runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentflow_events", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_events_name", ["name", "created_at"], unique=False)

    op.create_table(
        "agentflow_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("level", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("message", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("fields", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentflow_logs", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_logs_run", ["run_id", "id"], unique=False)

    op.create_table(
        "agentflow_runs",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("workflow_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("payload", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("output", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("queue", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("tags", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("run_metadata", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("parent_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("idempotency_expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("available_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("worker_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("executed_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentflow_runs", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_runs_claim", ["status", "available_at"], unique=False)
        batch_op.create_index("ix_agentflow_runs_created", ["created_at"], unique=False)
        batch_op.create_index("ix_agentflow_runs_parent", ["parent_id"], unique=False)
        batch_op.create_index("ix_agentflow_runs_worker", ["worker_id"], unique=False)
        batch_op.create_index(
            "ix_agentflow_runs_workflow", ["workflow_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ux_agentflow_runs_idempotency", ["workflow_id", "idempotency_key"], unique=True
        )

    op.create_table(
        "agentflow_steps",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("output", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=False),
        sa.Column("info", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq"),
    )
    op.create_table(
        "agentflow_waitpoints",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("data", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("timeout_at", sa.Float(), nullable=True),
        sa.Column("resolution", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "seq", name="ux_agentflow_waitpoints_run_seq"),
        sa.UniqueConstraint("token"),
    )
    with op.batch_alter_table("agentflow_waitpoints", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_waitpoints_due", ["status", "timeout_at"], unique=False)
        batch_op.create_index(
            "ix_agentflow_waitpoints_target", ["kind", "target", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("agentflow_waitpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_waitpoints_target")
        batch_op.drop_index("ix_agentflow_waitpoints_due")

    op.drop_table("agentflow_waitpoints")
    op.drop_table("agentflow_steps")
    with op.batch_alter_table("agentflow_runs", schema=None) as batch_op:
        batch_op.drop_index("ux_agentflow_runs_idempotency")
        batch_op.drop_index("ix_agentflow_runs_workflow")
        batch_op.drop_index("ix_agentflow_runs_worker")
        batch_op.drop_index("ix_agentflow_runs_parent")
        batch_op.drop_index("ix_agentflow_runs_created")
        batch_op.drop_index("ix_agentflow_runs_claim")

    op.drop_table("agentflow_runs")
    with op.batch_alter_table("agentflow_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_logs_run")

    op.drop_table("agentflow_logs")
    with op.batch_alter_table("agentflow_events", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_events_name")

    op.drop_table("agentflow_events")
    with op.batch_alter_table("agentflow_attempt_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_attempt_errors_run")

    op.drop_table("agentflow_attempt_errors")
