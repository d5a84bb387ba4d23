"""CloudEvents the sandbox agencies publish, in the shape their subscribers expect.

The demo publishes them with :meth:`dargah.client.GsbClient.publish` on the
civil registration's topics (``{sabt subsystem id}/birth-registered.v1``);
the welfare agency's ``POST /behzisti/events`` webhook understands them.
"""

from __future__ import annotations

from typing import Any

from dargah.sandbox.citizens import Citizen

BIRTH_REGISTERED = "ir.gov.sabt.birth-registered.v1"
DEATH_REGISTERED = "ir.gov.sabt.death-registered.v1"


def birth_registered_event(child: Citizen) -> dict[str, Any]:
    """The ``birth-registered.v1`` event of a newborn (``id``, ``time`` filled in on publish)."""
    return {
        "type": BIRTH_REGISTERED,
        "subject": child.national_code,
        "datacontenttype": "application/json",
        "data": {
            "national_code": child.national_code,
            "first_name": child.first_name,
            "last_name": child.last_name,
            "gender": child.gender,
            "birth_date": child.birth_date,
            "birth_date_jalali": child.birth_date_jalali,
            "father_national_code": child.father_code,
            "mother_national_code": child.mother_code,
        },
    }


def death_registered_event(citizen: Citizen) -> dict[str, Any]:
    """The ``death-registered.v1`` event of a deceased citizen."""
    return {
        "type": DEATH_REGISTERED,
        "subject": citizen.national_code,
        "datacontenttype": "application/json",
        "data": {
            "national_code": citizen.national_code,
            "death_date": citizen.death_date,
            "death_date_jalali": citizen.death_date_jalali,
        },
    }
