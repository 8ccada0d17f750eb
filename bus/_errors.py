"""The bus's errors. redis-py exception types never reach users: ``_redis.py`` translates them.

BusError
 +-- ConfigurationError          bad settings; names the variable
 +-- BusClosedError              the bus was used after aclose()
 +-- BackendError                Redis trouble
 |    +-- BackendUnavailableError    connection refused/reset, server loading
 |    +-- BackendTimeoutError        a command or blocking read timed out
 |    +-- GroupMissingError          NOGROUP: stream or group vanished (e.g. restart without persistence)
 |    +-- AuthenticationError        NOAUTH / WRONGPASS: fatal, never retried
 |         +-- PermissionDeniedError     NOPERM: the ACL user may not touch that key or command
 +-- PublishError                a publish wrote nothing
 |    +-- PayloadValidationError     also a schemas.EventValidationError: event type, path, rule
 |    +-- PayloadTooLargeError       the encoded entry exceeds max_payload_bytes
 |    +-- PublishOutcomeUnknownError the connection died after sending: the write may have happened
 +-- HandlerError                a handler failed (carried in dead-letter metadata, never raised to callers)

Handler signals (not errors): ``RetryLater`` leaves the entry pending for redelivery,
``Reject`` dead-letters it at once.
"""

from __future__ import annotations

from schemas import EventValidationError

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BusClosedError",
    "BusError",
    "ConfigurationError",
    "GroupMissingError",
    "HandlerError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermissionDeniedError",
    "PublishError",
    "PublishOutcomeUnknownError",
    "Reject",
    "RetryLater",
]


class BusError(Exception):
    """Root of every error the bus raises."""


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


class BackendTimeoutError(BackendError, TimeoutError):
    """A Redis command or blocking read timed out."""


class GroupMissingError(BackendError):
    """A consumer group or its stream does not exist (NOGROUP)."""


class AuthenticationError(BackendError):
    """Redis rejected the credentials (NOAUTH, WRONGPASS). Retrying cannot help."""


class PermissionDeniedError(AuthenticationError):
    """The ACL user may not run that command or touch that key (NOPERM)."""


class PublishError(BusError):
    """A publish did not write."""


class PayloadValidationError(PublishError, EventValidationError):
    """The envelope or payload breaks its schema; nothing was written."""

    def __init__(self, event_type: str, path: str, rule: str) -> None:
        EventValidationError.__init__(self, event_type, path, rule)

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
