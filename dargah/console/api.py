"""Placeholder replaced by the management API."""

from typing import Any


def build_management_app(settings: Any, engine: Any) -> Any:
    return None
