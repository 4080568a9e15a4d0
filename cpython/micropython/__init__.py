# SPDX-License-Identifier: MIT
"""CPython stand-in for MicroPython's built-in `micropython` module, shipped only in the pip
package (pyproject.toml maps it from cpython/), so `from micropython import const` in the
library works on CPython unchanged. Device code has no fallback (STYLE.md); boards never get
this file: MicroPython's own module is built in.
"""


def const(x):
    """MicroPython folds const() at compile time; on CPython it is the value itself."""
    return x
