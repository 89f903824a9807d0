"""A bounded cache for the hot path: what a record text, or a tuple of fields, becomes is looked up, not redone."""
from __future__ import annotations

CACHE_LIMIT = 8192  # entries per cache


class BoundedCache(dict):
    """A dict that starts again empty when full, so memory stays bounded whatever the input (a full cache of
    things seen once is not worth sorting out: true novelty, not eviction, is what costs)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = CACHE_LIMIT):
        super().__init__()
        self.limit = limit

    def put(self, key, value):
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
