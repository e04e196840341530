"""The demo profile's ``Definitions``: production's, extended with the simulated A/B export.

``align_core.settings.CODE_LOCATIONS`` names this module for the ``demo`` profile, so the code
location (:mod:`align_assets.definitions`) and the runners load it by name. It adds the demo's
assets (:mod:`align_demo.assets`) with ``Definitions.merge``; the only change to production's
graph is that ``ab_results`` waits for the simulated export.
"""

from __future__ import annotations

from dagster import Definitions

from align_assets import production
from align_assets.resources import PlatformResource, default_resources
from align_demo.assets import AB_RESULTS_DEPS, demo_assets, demo_checks
from align_demo.provenance import demo_made

__all__ = [
    "build_definitions",
    "demo_definitions",
]

#: What the demo adds to production: the simulated export and the check that the analysis recovers it.
demo_definitions = Definitions(assets=demo_assets, asset_checks=demo_checks)


def build_definitions(resources: dict[str, object] | None = None) -> Definitions:
    """Production's definitions for ``resources``, merged with the demo's (default: resources from the environment).

    Under another profile than ``demo``, or on a data directory the demo did not make (a user's
    own videos under the default profile), it is production's graph unchanged: simulated A/B
    results never reach a user's warehouse.
    """
    resources = resources or default_resources()
    platform = resources["platform"]
    assert isinstance(platform, PlatformResource)
    if platform.profile != "demo" or not demo_made(platform.layout):
        return production.build_definitions(resources)
    production_defs = production.build_definitions(resources, ab_results_deps=AB_RESULTS_DEPS)
    return Definitions.merge(production_defs, demo_definitions)
