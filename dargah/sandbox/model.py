"""The shape of a sandbox agency: its services, their operations and its event topics.

Plain frozen dataclasses; the agencies themselves are in :mod:`dargah.sandbox.agencies`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Operation:
    """One HTTP operation of a service, for its OpenAPI document."""

    method: str
    path: str
    summary_fa: str
    response: str
    request: str | None = None
    status: int = 200


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One bus service a sandbox agency provides."""

    code: str
    title_fa: str
    title_en: str
    personal_data: bool
    purposes: tuple[str, ...]
    supplies: tuple[str, ...]
    example_path: str
    operations: tuple[Operation, ...]
    example_method: str = "GET"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """An event topic an agency publishes (gsb-protocol §7)."""

    code: str
    title_fa: str
    title_en: str


@dataclass(frozen=True, slots=True)
class Agency:
    """A fictional government agency with one providing subsystem."""

    subsystem_code: str
    legal_id: str
    name_fa: str
    name_en: str
    services: tuple[ServiceSpec, ...]
    topics: tuple[TopicSpec, ...] = ()
    member_class: str = "GOV"

    def member_id(self, instance: str) -> str:
        return f"{instance}/{self.member_class}/{self.legal_id}"

    def subsystem_id(self, instance: str) -> str:
        """The agency's subsystem id, which is also its client id."""
        return f"{self.member_id(instance)}/{self.subsystem_code}"

    def service_id(self, instance: str, code: str) -> str:
        return f"{self.subsystem_id(instance)}/{code}"

    def service(self, code: str) -> ServiceSpec:
        for spec in self.services:
            if spec.code == code:
                return spec
        raise KeyError(code)
