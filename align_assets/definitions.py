"""The code location (``workspace.yaml``, ``[tool.dagster]``): the ``Definitions`` of the environment's profile.

Each profile names the module that builds its definitions (:data:`align_core.settings.CODE_LOCATIONS`):
production's :mod:`align_assets.production`, or for the demo profile the demo package's, which
extends production with the simulated A/B export. The module is imported by that configured
name, so the Dagster layer itself never imports demo code. ``defs`` is the graph for the
environment's profile (``ALIGN_PROFILE``).
"""

from __future__ import annotations

import importlib

from dagster import Definitions

from align_assets.resources import default_resources
from align_core.settings import code_location_module

__all__ = [
    "all_asset_checks",
    "all_assets",
    "build_definitions",
    "defs",
]


def build_definitions(resources: dict[str, object] | None = None) -> Definitions:
    """The definitions of the profile of ``resources`` (default: :func:`default_resources` from the environment).

    The profile's module (e.g. ``align_assets.production``) exposes ``build_definitions(resources)``.
    """
    resources = resources or default_resources()
    module = importlib.import_module(code_location_module(resources["platform"].profile))
    return module.build_definitions(resources)


defs = build_definitions()
all_assets = list(defs.assets)
#: Checks defined apart from their asset (the annotated masks' partitioned checks, the demo's planted-effects check).
all_asset_checks = list(defs.asset_checks)
