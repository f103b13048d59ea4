"""The results store: shards and format versions (store), the record's fields and the rows read
from them (records), and migrations between formats (migrate)."""

from harness.store.store import RECORD_FORMAT, Store, UnitState

__all__ = ["RECORD_FORMAT", "Store", "UnitState"]
