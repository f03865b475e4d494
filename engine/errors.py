"""The engine's error tree, split by who must act.

::

    JourneyError                      base of everything the engine raises on purpose
    ├── DefinitionError               the journey author fixes the YAML or a template
    │   └── CompileError              a journey directory failed to compile (all diagnostics)
    ├── EventError                    the upstream system fixes the payload
    │   └── InvalidMessage            one Segment message is malformed (names the field)
    ├── DeliveryError                 a channel provider refused or failed a message
    │   ├── TransientDeliveryError    retry later (``retry_after`` seconds, if the provider said)
    │   │   ├── ProviderThrottled     the provider asked us to slow down (not an outage)
    │   │   ├── CredentialError       credentials or account refused: ops fix; the channel is held
    │   │   └── DeliveryDeferred      not attempted: the provider was never called
    │   │       ├── CircuitOpen       the provider's circuit breaker holds the channel
    │   │       └── RateLimited       the account's (or recipient's) rate limit is used up
    │   └── PermanentDeliveryError    do not retry; the send step may fall back
    │       └── InvalidAddress        the address is wrong for good (``clear``: forget the trait)
    ├── RenderError                   a template or inline content could not be rendered
    └── EngineError                   ops must look: a bug, a broken store, a lost invariant
        └── ConfigurationError        a setting is missing or wrong (names the JOURNEY_* variable)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO


class JourneyError(Exception):
    """Base class of every error the engine raises deliberately."""


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in a journey directory, located as ``file:line:column``."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class DefinitionError(JourneyError):
    """A journey, policy or template definition is wrong; its author must fix it."""


class CompileError(DefinitionError):
    """A journey directory did not compile; carries every diagnostic, not just the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    def report(self, stream: TextIO) -> None:
        """Print every diagnostic, one per line, and a closing count."""
        for diagnostic in self.diagnostics:
            print(diagnostic, file=stream)
        print(f"{len(self.diagnostics)} error(s); nothing deployed.", file=stream)


class EventError(JourneyError):
    """An incoming event cannot be accepted; the upstream system must fix it."""


class InvalidMessage(EventError):
    """A Segment message is malformed. ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        named = not field or message.startswith(f"{field}:")
        super().__init__(message if named else f"{field}: {message}")


class DeliveryError(JourneyError):
    """A channel sender could not deliver a message."""


class TransientDeliveryError(DeliveryError):
    """Delivery failed for now; the same message may be retried after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ProviderThrottled(TransientDeliveryError):
    """The provider refused the call as too frequent; it is healthy and the call is safe to repeat.

    Throttling is not an outage: circuit breakers do not count it.
    """


class CredentialError(TransientDeliveryError):
    """The provider refused our credentials or account (bad key, suspended account, sender not
    allowed). No message of the channel can go until ops fix it: the circuit breaker opens at
    once and holds the channel, and says why. The message itself is retried afterwards."""


class DeliveryDeferred(TransientDeliveryError):
    """The provider was not called at all, so this is not a try: retry after ``retry_after``."""


class CircuitOpen(DeliveryDeferred):
    """The provider's circuit breaker is open (it kept failing, or refused our credentials)."""


class RateLimited(DeliveryDeferred):
    """The rate limit of the provider account, or of the recipient, is used up for now."""


class PermanentDeliveryError(DeliveryError):
    """Delivery can never succeed for this message (bad address, rejected content...)."""


class InvalidAddress(PermanentDeliveryError):
    """The address in profile trait ``trait`` is refused by the provider for good.

    ``clear`` is true when the provider says the address no longer exists (an unregistered
    push token): the engine should remove the trait from the profile so it is never tried again.
    """

    def __init__(self, message: str, trait: str, clear: bool = False) -> None:
        self.trait = trait
        self.clear = clear
        super().__init__(message)


class RenderError(JourneyError):
    """A template or inline content failed to render; the message is recorded as failed."""


class EngineError(JourneyError):
    """Something inside the engine is broken; ops must act."""


class ConfigurationError(EngineError):
    """A setting is missing or wrong; ``setting`` names its ``JOURNEY_*`` environment variable."""

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}")
