"""Which of several simulation workers each user belongs to.

A user's inputs never touch another user's state, except where ids are linked
(``identify`` with both ids, ``alias``): then two ids become one user. So ids that
are ever linked, or merely asked to be, go to the same worker: every link
attempt of the file joins its ids' groups before the first event is routed. A
link the engine refuses (the first link of an id wins) still joins the groups,
which costs balance, never correctness. Groups go to workers by a hash of their
ids, or, when the work of each is known beforehand (a file that is sorted is read
whole first), heaviest first to the least loaded worker.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from zlib import crc32

from engine.events import Event
from engine.identity import anonymous_key, routing_key, user_key


class UserShards:
    """Routes events to ``count`` workers, linked ids together."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("at least one worker")
        self.count = count
        #: Union-find parents of the ids that take part in links (others are their own).
        self._parent: dict[str, str] = {}
        #: Ids of the keys events resolve to, and each id's worker once asked (else -1).
        self._ids: dict[str, int] = {}
        self._keys: list[str] = []
        self._shards: list[int] = []

    def learn(self, event: Event) -> None:
        """Join the ids ``event`` links (or asks to link); other events teach nothing."""
        if event.user_id is None:
            return
        target = user_key(event.user_id)
        if event.type == "alias":
            if event.previous_id is not None:
                self._join(anonymous_key(event.previous_id), target)
                self._join(user_key(event.previous_id), target)
        elif event.type == "identify" and event.anonymous_id is not None:
            self._join(anonymous_key(event.anonymous_id), target)

    def key_id(self, key: str) -> int:
        """A number for ``key`` (an event's :func:`~engine.identity.routing_key`), the same
        for every event of it; it may be asked before every link is learnt."""
        number = self._ids.get(key)
        if number is None:
            number = self._ids[key] = len(self._keys)
            self._keys.append(key)
            self._shards.append(-1)
        return number

    def shard(self, key_id: int) -> int:
        """The worker of a key (by :meth:`key_id`); ask once every link is learnt."""
        shard = self._shards[key_id]
        if shard < 0:
            key = self._keys[key_id]
            root = self._root(key) if key in self._parent else key
            shard = self._shards[key_id] = crc32(root.encode()) % self.count
        return shard

    def balance(self, weights: Sequence[int]) -> None:
        """Give every key known so far its worker, evening out the workers' loads, where
        ``weights[key_id]`` is the work of a key (its events). Each group of linked ids
        goes whole, the heaviest first, to the worker with the least so far."""
        groups: dict[str, int] = {}
        roots: list[str] = []
        parent = self._parent
        for key_id, key in enumerate(self._keys):
            root = self._root(key) if key in parent else key
            roots.append(root)
            groups[root] = groups.get(root, 0) + (weights[key_id] if key_id < len(weights) else 0)
        loads = [(0, shard) for shard in range(self.count)]
        placed: dict[str, int] = {}
        for root, weight in sorted(groups.items(), key=lambda item: (-item[1], item[0])):
            load, shard = loads[0]
            placed[root] = shard
            heapq.heapreplace(loads, (load + weight, shard))
        self._shards = [placed[root] for root in roots]

    def of(self, event: Event) -> int:
        """The worker that applies ``event``; ask once every link is learnt."""
        return self.shard(self.key_id(routing_key(event.user_id, event.anonymous_id)))

    def _root(self, key: str) -> str:
        parent = self._parent
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while key != root:  # path compression
            following = parent[key]
            parent[key] = root
            key = following
        return root

    def _join(self, a: str, b: str) -> None:
        parent = self._parent
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        root_a, root_b = self._root(a), self._root(b)
        if root_a != root_b:
            # The smaller root wins, so a group's root does not depend on link order.
            low, high = sorted((root_a, root_b))
            parent[high] = low
