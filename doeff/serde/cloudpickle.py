"""`CloudpickleCodec`: pickle plus lambdas, closures and classes defined in scripts or notebooks.
Reading needs only `pickle`, and carries the same warning: never load data you do not trust."""

from __future__ import annotations

import io
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from doeff.serde.pickle import PickleCodec, check_exception


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, checking exceptions as it meets them (as `PickleCodec` does)."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        self.protocol = protocol

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            return check_exception(obj, self.protocol)
        return super().reducer_override(obj)


class CloudpickleCodec(PickleCodec):
    """cloudpickle for writing (by value where pickle goes by reference); pickle for reading.

        f = CloudpickleCodec().decode(CloudpickleCodec().encode(lambda x: x + 1))
    """

    tag = "cloudpickle"

    def _dumps(self, obj: object) -> bytes:
        # A fresh pickler each time: cloudpickle's keeps per-dump state of its own.
        with io.BytesIO() as file:
            _Pickler(file, protocol=self.protocol).dump(obj)
            return file.getvalue()
