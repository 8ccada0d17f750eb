"""The C checks of ``schemas/_speedups.c``, each None when the package was built without a C compiler.

The one place that imports the optional extension; each caller keeps a Python path for None
(the same verdicts, slower). What each function proves: the header of ``_speedups.c``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

__all__ = ["ids_ok", "lacks_key", "plain_json"]

ids_ok: Callable[[list[str], list[str] | str], bool] | None = None
lacks_key: Callable[[bytes, tuple[bytes, ...]], bool] | None = None
plain_json: Callable[[bytes], bool] | None = None
with contextlib.suppress(ImportError):
    from ._speedups import ids_ok, lacks_key, plain_json
