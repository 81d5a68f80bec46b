"""The latent wing: what a trained generator's z controls.

- `ops`: nudges, sweeps, interpolation (lerp, slerp), class blends, a ranking of dimensions;
- `directions`: directions in z that matter (SeFa, PCA of early activations, a class boundary);
- `inversion`: real images projected into z;
- `figures`: the labelled image sheets and the rank plot;
- `studies`: each study run and saved as a folder (figures + a JSON record) that `gankit report`
  shows. The CLI's `sample`, `explore ...` and `invert` parse their flags and call these; the
  Python API (`GANPipeline`) calls the same functions.
"""
from __future__ import annotations

from .ops import (INTERPOLATIONS, ForClass, check_dims, class_blend, lerp, nudge, rank_dims, slerp, slerp_at,
                  sweep)

__all__ = ["INTERPOLATIONS", "ForClass", "check_dims", "class_blend", "lerp", "nudge", "rank_dims", "slerp",
           "slerp_at", "sweep"]
