"""Redis replies as text: the one bytes-to-str helper of the bus (a client may decode, or not)."""

from __future__ import annotations

__all__ = ["text"]


def text(value: object, errors: str = "strict") -> str:
    """``value`` decoded when it is bytes (UTF-8; ``errors`` as ``bytes.decode``), else ``str(value)``."""
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)
