"""Run the analysis with single-threaded BLAS.

The analysis solves many small systems (thousands of rows by tens of columns). Measured on the
2-core build machine under load: a 3500 x 35 least-squares solve took 0.0012 s with one
OpenBLAS thread and 0.24 s with two (threads spin-waiting for a busy core), which made the
interaction GLMs 100x slower than necessary. Threads buy nothing at these sizes, so the report
pins OpenBLAS to one thread while it runs and restores the previous count afterwards. This is
what ``threadpoolctl`` does; it is not a dependency here, so the few lines live in this module.
Platforms without ``/proc/self/maps`` or without OpenBLAS are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from pathlib import Path

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")


def _loaded_openblas() -> list[ctypes.CDLL]:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    paths = sorted({line.split()[-1] for line in maps.read_text().splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def _symbol(lib: ctypes.CDLL, names: tuple[str, ...]) -> ctypes._CFuncPtr | None:
    for name in names:
        func = getattr(lib, name, None)
        if func is not None:
            return func
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit every loaded OpenBLAS to one thread inside the block."""
    import numpy  # noqa: F401  (make sure numpy's OpenBLAS is loaded before scanning)

    restore = []
    for lib in _loaded_openblas():
        setter, getter = _symbol(lib, _SETTERS), _symbol(lib, _GETTERS)
        if setter is None or getter is None:
            continue
        previous = int(getter())
        setter(ctypes.c_int(1))
        restore.append((setter, previous))
    try:
        yield
    finally:
        for setter, previous in restore:
            setter(ctypes.c_int(previous))
