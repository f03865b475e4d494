"""Personal data in text meant for people who run the engine: masked where it must appear.

Logs and broker messages carry ids, never addresses or rendered content. Where an address
has to be named (a provider's error that quotes it), it is masked: ``+86138****0000``,
``l***@example.com``.
"""

from __future__ import annotations


def mask(address: str) -> str:
    """An address with the part that identifies its owner hidden."""
    text = address.strip()
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    if sum(c.isdigit() for c in text) >= 7:
        return f"{text[:6]}****{text[-4:]}"
    return f"{text[:2]}***" if len(text) > 4 else "***"


def redact(text: str, *private: str) -> str:
    """``text`` with every occurrence of the ``private`` strings masked."""
    for value in private:
        if value and len(value) >= 3:
            text = text.replace(value, mask(value))
    return text
