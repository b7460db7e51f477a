"""Storage: SQLModel tables, the store, per-database parts and migrations."""

from .database import Database, normalize_url
from .store import LeaseLost, NewRun, NewWaitpoint, Store

__all__ = ["Database", "LeaseLost", "NewRun", "NewWaitpoint", "Store", "normalize_url"]
