"""Oversight: what citizens actually experience of public services (smartness.md).

The evidence observed of each service, its verified level, whether it counts toward the
7th Plan target, and each agency's progress toward that target.
"""

from __future__ import annotations

from dargah.oversight.evidence import Evidence, gather
from dargah.oversight.levels import Verdict, assess, counted, verified_level
from dargah.oversight.plan import (
    agency_progress,
    expected_now,
    project,
    standing,
    target_at_year_end,
)

__all__ = [
    "Evidence",
    "Verdict",
    "agency_progress",
    "assess",
    "counted",
    "expected_now",
    "gather",
    "project",
    "standing",
    "target_at_year_end",
    "verified_level",
]
