"""Settings of ``bus dashboard``: where it listens, who may write, how often pages refresh."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec
from msgspec import Meta

from .._errors import ConfigurationError

__all__ = ["DashboardSettings"]


class DashboardSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``write_token`` unlocks replay and purge (None: read-only); a host other than loopback needs one."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8765
    write_token: str | None = None
    #: Seconds between live refreshes of the overview and stream pages.
    refresh_s: Annotated[float, Meta(gt=0)] = 5.0
    #: Recent entries shown on a stream page.
    recent_entries: Annotated[int, Meta(gt=0, le=1000)] = 20
    #: Dead letters listed per dead-letter stream.
    dead_letters_per_stream: Annotated[int, Meta(gt=0, le=10_000)] = 100

    def __post_init__(self) -> None:
        if self.write_token is not None and len(self.write_token) < 16:
            raise ConfigurationError("BUS_DASHBOARD_TOKEN", "a write token needs at least 16 characters")
        if not self.is_loopback and self.write_token is None:
            raise ConfigurationError(
                "--host",
                f"{self.host} is not a loopback address: the dashboard only listens beyond this machine with a "
                "write token (BUS_DASHBOARD_TOKEN), so that nobody else can replay or purge",
            )

    @property
    def is_loopback(self) -> bool:
        """True for localhost, 127.0.0.0/8 and ::1."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
