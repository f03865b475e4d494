"""The built-in providers, one module each, speaking the provider's own protocol.

Each module has a sender class (``send(message) -> Receipt``, ``provider``, ``account``,
``close()``) and ``from_settings(settings)``, which :mod:`engine.channels.config` calls
when ``JOURNEY_<CHANNEL>_PROVIDER`` names it. Every base URL is a setting, so tests and
staging point them at local servers.
"""
