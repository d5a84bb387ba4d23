"""Which agencies of the sandbox catalogue have an application desk, and for which services.

Read from the seed catalogue: every card whose ``submit_to`` is a ``…/desk/applications.v1``
service. See :mod:`dargah.sandbox.providers.desk`.
"""

from __future__ import annotations

from functools import cache

from dargah.sandbox.catalogue_seed import load_seed_catalogue
from dargah.sandbox.providers.desk import SERVICE, SUBSYSTEM


def desk_service_id(instance: str, legal_id: str) -> str:
    return f"{instance}/GOV/{legal_id}/{SUBSYSTEM}/{SERVICE}"


@cache
def desks() -> dict[str, tuple[str, frozenset[str]]]:
    """Legal ID -> (agency name, the public service IDs its desk receives)."""
    seed = load_seed_catalogue()
    names = {a["legal_id"]: a.get("name_fa") or a["legal_id"] for a in seed["agencies"]}
    found: dict[str, set[str]] = {}
    for card in seed["services"]:
        if str(card.get("submit_to") or "").endswith(f"/{SUBSYSTEM}/{SERVICE}"):
            found.setdefault(card["agency_legal_id"], set()).add(card["service_id"])
    return {k: (names.get(k, k), frozenset(v)) for k, v in sorted(found.items())}
