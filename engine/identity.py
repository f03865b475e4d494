"""One person, many ids: trait merging and the anonymous-to-known identity map.

An ``identify`` carrying both ``userId`` and ``anonymousId`` (or an ``alias``
from ``previousId`` to ``userId``) links the ids: from then on both reach the
same user (journey-format sections 7 and 9). The first link of an id wins; a
later attempt to link it to another user is ignored, so a shared device cannot
move one customer's journeys to another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ANONYMOUS_PREFIX = "anon:"
USER_PREFIX = "user:"
_NOT_MAPPINGS = (str, int, float, list, type(None))


def merge_traits(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` wins over ``base``; nested objects merge key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, _NOT_MAPPINGS):  # most traits; spares the ABC check below
            merged[key] = value
            continue
        previous = merged.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            merged[key] = merge_traits(previous, value)
        else:
            merged[key] = value
    return merged


def user_key(user_id: str) -> str:
    return USER_PREFIX + user_id


def anonymous_key(anonymous_id: str) -> str:
    return ANONYMOUS_PREFIX + anonymous_id


def routing_key(user_id: str | None, anonymous_id: str | None) -> str:
    """The key an event's ids name before any link: its userId's, else its anonymousId's
    (events are routed and partitioned by it)."""
    if user_id is not None:
        return USER_PREFIX + user_id
    assert anonymous_id is not None
    return ANONYMOUS_PREFIX + anonymous_id


def display_id(key: str) -> str:
    """The id trace lines and templates show for a key: the user id, else the anonymous id."""
    return key.split(":", 1)[1]


@dataclass
class IdentityMap:
    """Maps every id a user was seen under to the key of the user who owns it now."""

    links: dict[str, str] = field(default_factory=dict)

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> str:
        """The key an event belongs to: its userId's, else its anonymousId's owner."""
        key = routing_key(user_id, anonymous_id)
        return self.links.get(key, key)

    def owner(self, key: str) -> str:
        """The key of the user who owns ``key`` now (itself when unlinked)."""
        return self.links.get(key, key)

    def link(self, source: str, target: str) -> bool:
        """Link ``source`` to ``target``'s owner. Returns True when ``source`` changed hands.

        A key already linked elsewhere stays where it is (the first link wins).
        """
        owner = self.links.get(target, target)
        if source == owner or source in self.links:
            return False
        self.links[source] = owner
        for key, value in self.links.items():
            if value == source:
                self.links[key] = owner
        return True
