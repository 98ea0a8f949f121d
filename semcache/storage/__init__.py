"""Where entries live: the entry model, the store seams, the disk store, the vector index and its mirror."""

from .disk import DiskStore
from .entry import Change, Entry

__all__ = ["Change", "DiskStore", "Entry"]
