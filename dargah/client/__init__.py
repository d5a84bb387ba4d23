"""What an agency runs to use the bus: the consumer client and the provider helper.

- :class:`GsbClient`, :class:`AsyncGsbClient`: get tokens and call bus services.
- :class:`AssertionVerifier`, :class:`GsbAssertionMiddleware`: accept only calls
  that came through the bus (checks ``GSB-Assertion``).
"""

from dargah.client.calls import GsbError, ProviderError
from dargah.client.consumer import AsyncGsbClient, GsbClient
from dargah.client.provider import (
    AssertionClaims,
    AssertionVerifier,
    GsbAssertionMiddleware,
    InvalidAssertion,
    verify_request_headers,
)
from dargah.client.tokens import TokenError

__all__ = [
    "AssertionClaims",
    "AssertionVerifier",
    "AsyncGsbClient",
    "GsbAssertionMiddleware",
    "GsbClient",
    "GsbError",
    "InvalidAssertion",
    "ProviderError",
    "TokenError",
    "verify_request_headers",
]
