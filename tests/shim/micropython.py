# SPDX-License-Identifier: MIT
"""CPython stand-in for MicroPython's `micropython` module, for tests only.

Device code imports `from micropython import const` with no fallback (STYLE.md); the tests
put this directory on PYTHONPATH so the same code runs under CPython.
"""


def const(x):
    return x


def heap_lock():
    # MicroPython returns the lock depth; CPython has no GC heap to lock.
    return 0


def heap_unlock():
    return 0


def mem_info(*args):
    pass


def mem_peak():
    pass
