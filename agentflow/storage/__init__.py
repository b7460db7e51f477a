"""Storage: SQLModel tables, the store, per-database parts and migrations."""

from .database import Database, normalize_url
from .records import LeaseLost, NewRun, NewWaitpoint
from .store import Store

__all__ = ["Database", "LeaseLost", "NewRun", "NewWaitpoint", "Store", "normalize_url"]
