"""The bus's errors. redis-py exception types never reach users: ``_redis.py`` translates them.

BusError
 +-- ConfigurationError          bad settings; names the variable
 +-- InvalidTenantIdError        a tenant id that would widen key patterns (glob, hash tag, separator, ...)
 +-- BusClosedError              the bus was used after aclose()
 +-- BackendError                Redis trouble
 |    +-- BackendUnavailableError    connection refused/reset, server loading
 |    +-- BackendTimeoutError        a command or blocking read timed out
 |    +-- BackendRefusedError        Redis is up but refuses writes for a reason about Redis, not the event
 |    |    +-- BackendOutOfMemoryError   OOM: maxmemory reached under noeviction
 |    |    +-- BackendReadOnlyError      READONLY: connected to a replica (e.g. after a failover)
 |    |    +-- BackendLoadingError       LOADING: the dataset is being loaded (also a BackendUnavailableError)
 |    |    +-- BackendPersistenceError   MISCONF: writes stopped after a failed background save
 |    +-- GroupMissingError          NOGROUP: stream or group vanished (e.g. restart without persistence)
 |    +-- AuthenticationError        NOAUTH / WRONGPASS: fatal, never retried
 |         +-- PermissionDeniedError     NOPERM: the ACL user may not touch that key or command
 |         +-- TLSHandshakeError         certificate not trusted, wrong host, client certificate refused
 +-- PublishError                a publish wrote nothing
 |    +-- PayloadValidationError     also a schemas.EventValidationError: event type, path, rule
 |    +-- PayloadTooLargeError       the encoded entry exceeds max_payload_bytes
 |    +-- PublishOutcomeUnknownError the connection died after sending: the write may have happened
 +-- HandlerError                a handler failed (carried in dead-letter metadata, never raised to callers)

Handler signals (not errors): ``RetryLater`` leaves the entry pending for redelivery,
``Reject`` dead-letters it at once.

Every message is redacted (``_redact.py``): known secrets, URL passwords and credentials never
reach an error's text.
"""

from __future__ import annotations

from typing import Any, ClassVar

from schemas import EventValidationError

from ._redact import redact_text

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendLoadingError",
    "BackendOutOfMemoryError",
    "BackendPersistenceError",
    "BackendReadOnlyError",
    "BackendRefusedError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BusClosedError",
    "BusError",
    "ConfigurationError",
    "GroupMissingError",
    "HandlerError",
    "InvalidTenantIdError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermissionDeniedError",
    "PublishError",
    "PublishOutcomeUnknownError",
    "Reject",
    "RetryLater",
    "TLSHandshakeError",
]


class BusError(Exception):
    """Root of every error the bus raises; text arguments are redacted."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class ConfigurationError(BusError, ValueError):
    """A setting is missing or invalid; the message names the variable and the fix."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class BusClosedError(BusError, RuntimeError):
    """The bus was used after it was closed."""


class BackendError(BusError):
    """Redis failed or refused a command."""


class BackendUnavailableError(BackendError, ConnectionError):
    """Redis could not be reached (refused, reset, loading)."""


class BackendProtocolError(BackendError):
    """The server answered with something that is not the Redis protocol: the URL names another
    service's port (an HTTP server, a proxy, ...). Retrying cannot help; fix the URL."""


class BackendTimeoutError(BackendError, TimeoutError):
    """A Redis command or blocking read timed out."""


class BackendRefusedError(BackendError):
    """Redis is up but refused the command for a reason about Redis, not about the event; the
    refused command did not run, and the same command can succeed once Redis recovers.

    ``redis_message`` is Redis's own text; :attr:`fix` says what an operator can do, in one sentence.
    """

    #: The code Redis puts first in its error reply (``OOM``, ``READONLY``, ...).
    code: ClassVar[str] = ""
    #: What to do about it, in one sentence.
    fix: ClassVar[str] = ""

    def __init__(self, message: str, redis_message: str = "") -> None:
        self.redis_message = redis_message
        super().__init__(message)


class BackendOutOfMemoryError(BackendRefusedError):
    """Redis reached ``maxmemory`` with a ``noeviction`` policy and refuses writes (OOM)."""

    code = "OOM"
    fix = "free memory in Redis (trim streams, delete keys) or raise maxmemory; writes resume by themselves"


class BackendReadOnlyError(BackendRefusedError):
    """The server is a read-only replica (READONLY), e.g. the old master after a failover."""

    code = "READONLY"
    fix = "point REDIS_URL at the current master (or promote this server with REPLICAOF NO ONE)"


class BackendLoadingError(BackendRefusedError, BackendUnavailableError):
    """Redis is loading its dataset into memory and answers nothing else yet (LOADING)."""

    code = "LOADING"
    fix = "wait until Redis has loaded its dataset; it answers again by itself"


class BackendPersistenceError(BackendRefusedError):
    """Redis stopped accepting writes because its last background save failed (MISCONF)."""

    code = "MISCONF"
    fix = "fix the disk or permissions of Redis's dir (see its log), or set stop-writes-on-bgsave-error no"


class GroupMissingError(BackendError):
    """A consumer group or its stream does not exist (NOGROUP)."""


class AuthenticationError(BackendError):
    """Redis rejected the credentials (NOAUTH, WRONGPASS). Retrying cannot help."""


class PermissionDeniedError(AuthenticationError):
    """The ACL user may not run that command or touch that key (NOPERM)."""


class TLSHandshakeError(AuthenticationError):
    """The TLS handshake failed: the server's certificate is not trusted or not valid for the host,
    or the server refused our client certificate. Retrying cannot help."""


class InvalidTenantIdError(BusError, ValueError):
    """A tenant id that is unsafe in key names and ACL patterns; names the id and the rule."""

    def __init__(self, tenant_id: object, rule: str) -> None:
        self.tenant_id = tenant_id
        self.rule = rule
        shown = tenant_id if not isinstance(tenant_id, str) or len(tenant_id) <= 64 else tenant_id[:64] + "..."
        super().__init__(f"invalid tenant id {shown!r}: {rule}")


class PublishError(BusError):
    """A publish did not write."""


class PayloadValidationError(PublishError, EventValidationError):
    """The envelope or payload breaks its schema; nothing was written."""

    def __init__(self, event_type: str, path: str, rule: str) -> None:
        EventValidationError.__init__(self, event_type, path, redact_text(rule))

    @classmethod
    def from_schema_error(cls, exc: EventValidationError) -> PayloadValidationError:
        """Wrap a schema-layer error, keeping event type, path and rule."""
        return cls(exc.event_type, exc.path, exc.rule)


class PayloadTooLargeError(PublishError, ValueError):
    """The encoded entry is larger than ``max_payload_bytes``; nothing was written."""


class PublishOutcomeUnknownError(PublishError):
    """The connection failed after the command was sent; the entry may or may not exist.

    Not retried automatically (a blind retry could write a duplicate). Publish again with the
    same ``event_id``: consumers dedupe on it.
    """

    def __init__(self, message: str, event_ids: tuple[str, ...] = ()) -> None:
        self.event_ids = event_ids
        super().__init__(message)


class HandlerError(BusError):
    """A handler raised or timed out."""


class RetryLater(Exception):
    """Raised by a handler: leave the entry pending and deliver it again later."""


class Reject(Exception):
    """Raised by a handler: the entry can never succeed; dead-letter it now with this reason."""
