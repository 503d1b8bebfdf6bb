"""`Blob`: a run of raw bytes inside a value's state (an array's data, an Arrow stream).

A reducer wraps large raw data in a `Blob` instead of making `bytes` of it, so a codec can place
it without copying: msgpack writes it after the record's body (one copy into the record), JSON as
base64. A rebuilder reads it back with `blob_data`, which accepts every form a codec returns: a
numpy array copies it once into memory of its own; an Arrow stream is read in place, so its
arrays keep the record's bytes alive (they are immutable, and about the size of the data).
"""

from __future__ import annotations

from doeff.errors import DecodeError


class Blob:
    """Raw bytes to write as they are: `view` is a flat, contiguous byte view (no copy made)."""

    __slots__ = ("view",)

    def __init__(self, data: object) -> None:
        view = memoryview(data)  # type: ignore[arg-type]
        self.view = view if view.format == "B" and view.ndim == 1 else view.cast("B")

    def __len__(self) -> int:
        return self.view.nbytes


class BlobRef:
    """A `Blob` as read back from a record: a view of the record's bytes, not yet copied.

    `used` tells the reader a rebuilder consumed it; a reference left over in the decoded value was
    placed where no rebuilder expects raw bytes, and the record is refused.
    """

    __slots__ = ("used", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.used = False


def blob_data(value: object) -> memoryview:
    """The bytes a `Blob` was written as (however the codec returned them), as a byte view."""
    if type(value) is BlobRef:
        value.used = True
        return value.view
    if type(value) is bytes:
        return memoryview(value)
    raise DecodeError(f"expected raw bytes in the record, found a {type(value).__name__}")
