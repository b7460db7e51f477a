"""``python -m agentflow.cli``: the same as the ``agentflow`` console script."""

from . import main

main()
