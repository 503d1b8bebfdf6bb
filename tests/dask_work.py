"""Functions the Dask test sends to its workers: a module on the test path, so the worker
processes import it by name."""

from __future__ import annotations

import os
import time


def square_where(item: int) -> tuple[int, int]:
    """`item` squared, and the id of the process that computed it."""
    time.sleep(0.05)
    return item * item, os.getpid()
