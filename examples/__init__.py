"""Runnable agentflow examples. Each module exposes an ``engine`` for ``agentflow dev``."""
