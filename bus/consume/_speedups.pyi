# The C module bus/consume/_speedups.c (optional: absent when built without a C compiler).
from collections.abc import Callable
from typing import Any

def start(fn: Callable[[Any], Any], arg: Any, done: Any, resume: Callable[[Any, Any], Any], /) -> Any: ...
