"""Giving freed heap memory back to the operating system while the
transformer runs the length buckets of a long input.

glibc serves blocks of up to 32 MB from heaps it keeps once it has seen such
blocks freed (its mmap threshold rises with them), and a heap only shrinks
from its top. The buckets of a long document allocate activations of a
different shape each, so the freed ones rarely fit the next bucket's: the
heaps grow with the document although little of them is in use (measured:
+305 MB free inside the heap after a 50,000-token doc). `malloc_trim(0)`
returns every free page of every heap to the system, without moving
anything and without changing the allocator's settings for the rest of the
process. It costs the page faults of touching those pages again, so it is
called only when the process has grown by more than a set amount beyond
what the call keeps (see `HeapGrowthLimit`). Elsewhere than glibc (or
Linux, for the resident size) nothing is done.
"""
import ctypes
import os
from typing import Callable, Optional

_UNRESOLVED = object()
_malloc_trim: object = _UNRESOLVED


def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    try:  # the symbols the process has loaded, the C library's among them
        function = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc (musl, macOS, Windows)
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def release_free_memory() -> bool:
    """Return the free pages of the C heaps to the system where the C
    library can (glibc's malloc_trim). RETURNS (bool): whether it could."""
    global _malloc_trim
    if _malloc_trim is _UNRESOLVED:
        _malloc_trim = _find_malloc_trim()
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


def resident_bytes() -> Optional[int]:
    """This process's resident memory in bytes, less its resident shared
    pages (libraries, mapped files: not heap), where Linux's /proc tells."""
    try:
        with open("/proc/self/statm", "rb") as file_:
            fields = file_.read().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapGrowthLimit:
    """Release free heap memory whenever the process's resident memory has
    grown by more than `limit_bytes` beyond what the caller says it keeps,
    counted from the creation of the limit."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.start = resident_bytes()

    def check(self, kept_bytes: int = 0) -> bool:
        """RETURNS (bool): whether free memory was released."""
        if self.start is None:
            return False
        now = resident_bytes()
        if now is None or now - self.start <= kept_bytes + self.limit_bytes:
            return False
        return release_free_memory()
