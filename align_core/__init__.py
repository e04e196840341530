"""align_core: the pure library behind the attention-alignment platform.

Nothing in this package imports Dagster. The packages follow the data:

- ``inputs``: what a lab provides (videos, the research CSVs, keywords, product annotations) and
  the per-video catalog;
- ``perception``: attention maps, product masks, protected regions, control tensors;
- ``stimuli``: variant plans, the editors that render them, the ControlNet;
- ``measurement``: quality, the perceptual budget, the manipulation and stimulus checks;
- ``experiments``: experiment configs, eligibility, upload manifests, A/B results;
- ``io``: videos, arrays, atomic writes, the data-directory layout, the warehouse;
- ``stages``: one function per Dagster asset; ``cli``: the library's command-line programs.

Each stage is a function (or small class) from arrays/paths to arrays/paths, usable from a
notebook and testable alone; ``align_assets`` wires them into Dagster assets.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
