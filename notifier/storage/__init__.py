"""Storage backends behind one interface: memory (embedded), redis and cassandra."""

from notifier.storage.base import (
    Counts,
    Entry,
    FeedChange,
    Marks,
    Storage,
    StoredGroup,
)

__all__ = ["Counts", "Entry", "FeedChange", "Marks", "Storage", "StoredGroup"]
