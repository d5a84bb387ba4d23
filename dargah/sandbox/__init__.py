"""Fictional agencies as real HTTP providers, and the citizens they know.

- :func:`~dargah.sandbox.citizens.generate_citizens`: deterministic fictional citizens.
- :data:`~dargah.sandbox.agencies.AGENCIES`: the agencies, their services and topics.
- :func:`~dargah.sandbox.apps.build_sandbox_app`: all of them on one ASGI app.

Knows nothing of the bus, the registry or the store: only HTTP and
:mod:`dargah.client`, like any outside agency.
"""
