"""The C helpers of ``bus/consume/_speedups.c``, each None when the package was built without a C compiler.

The one place that imports the optional extension; each caller keeps a Python version for None
(the same behaviour, slower). What each function does: the header of ``_speedups.c``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["start"]

start: Callable[[Callable[[Any], Any], Any, Any, Callable[[Any, Any], Any]], Any] | None = None
with contextlib.suppress(ImportError):
    from ._speedups import start
