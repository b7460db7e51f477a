"""The ``agentflow`` command line.

Importing this package must stay cheap: ``agentflow --help`` should answer at once. The typer
app lives in :mod:`agentflow.cli.app`; the engine, SQLAlchemy and pydantic are imported only
inside the commands that need them.
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``agentflow`` console script."""
    from .app import run

    run()
