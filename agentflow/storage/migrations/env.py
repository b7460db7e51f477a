"""Alembic environment: agentflow always hands in an open connection."""

from __future__ import annotations

from alembic import context

from agentflow.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="agentflow_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
