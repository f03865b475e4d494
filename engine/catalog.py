"""What the engine runs: a compiled project, and the catalog of deployed versions.

A :class:`Project` is a journey directory after compilation, everything the runtime
needs and nothing of the files it came from (reading and compiling those is
``engine.project``'s work). The processor reaches journeys through a
:class:`Catalog`: ``journey simulate`` has one project (:class:`SingleVersion`), the
live engine every version ever deployed, since runs keep the version they entered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from engine.graph import CompiledJourney
from engine.policies import CompiledPolicies
from engine.rendering import TemplateStore


@dataclass(frozen=True)
class Project:
    """Everything the runtime needs from a journey directory."""

    journeys: Mapping[str, CompiledJourney]
    policies: CompiledPolicies
    templates: TemplateStore
    #: The journeys that react to each event name, in journey ``id`` order.
    by_event: Mapping[str, tuple[CompiledJourney, ...]] = field(default_factory=dict)
    version: str = ""

    @cached_property
    def triggered_by(self) -> Mapping[str, tuple[CompiledJourney, ...]]:
        """The journeys each event name can start, in journey ``id`` order."""
        return {
            name: tuple(journey for journey in journeys if journey.trigger.wants(name))
            for name, journeys in self.by_event.items()
        }


class Catalog(Protocol):
    """The deployed journeys: the current project, and any version runs are pinned to;
    and the journeys paused or stopped, which admit no one."""

    @property
    def current(self) -> Project: ...

    @property
    def halted(self) -> frozenset[str]: ...

    def journey(self, journey_id: str, version: str) -> CompiledJourney: ...


class SingleVersion:
    """A catalog of one project, which is never redeployed (``journey simulate``)."""

    def __init__(self, project: Project) -> None:
        self.current = project
        self.halted: frozenset[str] = frozenset()

    def journey(self, journey_id: str, version: str) -> CompiledJourney:
        return self.current.journeys[journey_id]
