"""align_core: the pure library behind the attention-alignment platform.

Nothing in this package imports Dagster. One module per pipeline stage; every stage is a
function (or small class) from arrays/paths to arrays/paths, so it is usable from a notebook
and testable alone. ``align_assets`` wires these into Dagster assets.
"""

__version__ = "0.1.0"
