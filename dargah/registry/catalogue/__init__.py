"""The catalogue of public services (شناسنامهٔ خدمات): cards, their import, export and levels.

See /spec/catalogue.md for the exchange format and docs/catalogue.md for importing.
"""

from __future__ import annotations

from dargah.registry.catalogue.exporter import export_catalogue
from dargah.registry.catalogue.importer import import_catalogue
from dargah.registry.catalogue.levels import definition_level
from dargah.registry.catalogue.mapping import Mapping, MappingError, load_mapping
from dargah.registry.catalogue.models import ImportReport, Problem

__all__ = [
    "ImportReport",
    "Mapping",
    "MappingError",
    "Problem",
    "definition_level",
    "export_catalogue",
    "import_catalogue",
    "load_mapping",
]
