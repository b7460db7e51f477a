"""API keys, webhook sources, settings, live stream chunks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agentflow_api_keys",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_table(
        "agentflow_settings",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "agentflow_stream_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("stream", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("data", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentflow_stream_chunks", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_stream_chunks_run", ["run_id", "id"], unique=False)

    op.create_table(
        "agentflow_webhook_sources",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("agentflow_runs", schema=None) as batch_op:
        batch_op.create_index("ix_agentflow_runs_updated", ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agentflow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_runs_updated")

    op.drop_table("agentflow_webhook_sources")
    with op.batch_alter_table("agentflow_stream_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_agentflow_stream_chunks_run")

    op.drop_table("agentflow_stream_chunks")
    op.drop_table("agentflow_settings")
    op.drop_table("agentflow_api_keys")
