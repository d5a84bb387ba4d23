"""The citizens the sandbox agencies know, indexed by national code and postal code.

One directory is shared by every agency of a sandbox app, so that a birth
registered at civil registration is known to the other agencies at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from dargah.sandbox.citizens import Citizen


class CitizenDirectory:
    """A mutable, thread-safe index of citizens."""

    def __init__(self, citizens: Iterable[Citizen]) -> None:
        self._lock = threading.Lock()
        self._by_code: dict[str, Citizen] = {}
        self._by_postal: dict[str, list[str]] = {}
        for citizen in citizens:
            self._put(citizen)

    def _put(self, citizen: Citizen) -> None:
        old = self._by_code.get(citizen.national_code)
        if old is not None and old.postal_code != citizen.postal_code:
            self._by_postal[old.postal_code].remove(old.national_code)
        self._by_code[citizen.national_code] = citizen
        residents = self._by_postal.setdefault(citizen.postal_code, [])
        if citizen.national_code not in residents:
            residents.append(citizen.national_code)

    def put(self, citizen: Citizen) -> None:
        """Add a citizen, or replace the one with the same national code."""
        with self._lock:
            self._put(citizen)

    def get(self, national_code: str) -> Citizen | None:
        return self._by_code.get(national_code)

    def at_postal_code(self, postal_code: str) -> list[Citizen]:
        """The citizens living at this postal code, in the order they were added."""
        with self._lock:
            codes = list(self._by_postal.get(postal_code, ()))
        return [self._by_code[c] for c in codes]

    def __contains__(self, national_code: object) -> bool:
        return national_code in self._by_code

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Citizen]:
        with self._lock:
            citizens = list(self._by_code.values())
        return iter(citizens)
