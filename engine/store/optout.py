"""Replies that unsubscribe: a text message of ``T``, ``TD`` or ``退订`` (``STOP`` and its
kin for Twilio) from a number unsubscribes every profile with that phone from SMS.

Carriers in China require a ``回T退订`` line in marketing SMS and that a ``T`` reply
stops them; Twilio's opt-out keywords are ``STOP``, ``STOPALL``, ``UNSUBSCRIBE``,
``CANCEL``, ``END`` and ``QUIT``. The change is recorded like an unsubscribe link's
(``engine.store.consent``), with source ``sms_reply``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.address_blocks import normalise
from engine.store.consent import unsubscribe
from engine.store.schema import Profile

OPT_OUT_WORDS = frozenset(
    {"T", "TD", "退订", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
)
#: Digits compared at the end of a number: enough to tell numbers apart whether or not
#: a report carries the country code (``13800000000`` and ``+8613800000000`` match).
SUFFIX = 10


def is_opt_out(text: str) -> bool:
    """Whether a reply's text asks to stop (case, spaces and closing punctuation aside)."""
    return text.strip().rstrip(".!。！").strip().upper() in OPT_OUT_WORDS


def _digits(phone: str) -> str:
    return normalise("sms", phone).lstrip("+")


def same_number(a: str, b: str) -> bool:
    """Equal, or equal but for a country code one of them leaves out."""
    x, y = _digits(a), _digits(b)
    if len(x) < 7 or len(y) < 7:
        return x == y
    return x == y or x.endswith(y) or y.endswith(x)


def opt_out(session: Session, phone: str, now: datetime) -> list[str]:
    """Unsubscribe from SMS every profile whose ``phone`` is ``phone``; their keys."""
    digits = _digits(phone)
    if len(digits) < 7:
        return []
    candidates = session.execute(
        select(Profile.user_key, Profile.traits).where(
            Profile.traits["phone"].as_string().like(f"%{digits[-SUFFIX:]}")
        )
    ).all()
    done = []
    for key, traits in candidates:
        stored = traits.get("phone") if isinstance(traits, dict) else None
        if isinstance(stored, str | int) and same_number(str(stored), phone):
            unsubscribe(session, key, "sms", source="sms_reply", message_id=None, now=now)
            done.append(key)
    return done
