"""Blocks that recur across payloads: the base Struct and the ``changes`` value."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["FieldChange", "Payload"]


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Base of every event payload Struct: frozen, keyword-only, unknown keys dropped."""


class FieldChange(Payload, frozen=True, kw_only=True):
    """One entry of ``changes``: ``{"previous": ..., "new": ...}``."""

    previous: Any = msgspec.UNSET
    new: Any = msgspec.UNSET
