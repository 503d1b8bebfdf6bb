"""`CloudpickleCodec`: pickle plus lambdas, closures and classes defined in scripts or notebooks.
Reading needs only `pickle`, and carries the same warning: never load data you do not trust."""

from __future__ import annotations

import cloudpickle  # type: ignore[import-untyped]

from doeff.serde.pickle import PickleCodec


class CloudpickleCodec(PickleCodec):
    """cloudpickle for writing (by value where pickle goes by reference); pickle for reading.

        f = CloudpickleCodec().decode(CloudpickleCodec().encode(lambda x: x + 1))
    """

    tag = "cloudpickle"

    def _dumps(self, obj: object) -> bytes:
        data: bytes = cloudpickle.dumps(obj, protocol=self.protocol)
        return data
