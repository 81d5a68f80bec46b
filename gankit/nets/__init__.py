"""The networks and what trains them: model families (models.py), their class-conditional
variants (conditional.py), objectives (losses.py), optimisers and learning-rate schedules
(optim.py) and the EMA of G (ema.py). Each registry is a plain dict keyed by the user's words:
MODELS, D_CONDITIONING, OBJECTIVES, OPTIMIZERS, LR_SCHEDULES."""
from __future__ import annotations

from torch import nn

from .conditional import D_CONDITIONING, conditional_models
from .ema import EMA
from .losses import OBJECTIVES, Objective
from .models import D_NORMS, MODELS, RESNET_SIZES, ModelSpec, count_params, has_batchnorm, init_normal02, spectral_normalize
from .fastgan import DECODERS
from .fastgan import SIZES as FASTGAN_SIZES
from .fastgan import family as fastgan_family
from .resnet import family as resnet_family

for _size in RESNET_SIZES:
    MODELS["resnet" if _size == 28 else f"resnet{_size}"] = ModelSpec(
        resnet_family(_size), f"R3GAN-style residual network at {_size}x{_size}: inverted-bottleneck blocks (`blocks` per "
                       f"resolution), no normalisation, fix-up init, [1,2,1] resampling", False, _size, own_init=True)
for _size in FASTGAN_SIZES:
    MODELS[f"fastgan{_size}"] = ModelSpec(
        fastgan_family(_size), f"FastGAN-style small-data network at {_size}x{_size}: GLU up-blocks with skip-layer "
                               f"excitation; D with reconstruction decoders on real images (`decoder`)", True, _size)
from .optim import LR_SCHEDULES, OPTIMIZERS, lr_factor, make_optimizer

__all__ = ["DECODERS", "D_CONDITIONING", "D_NORMS", "EMA", "LR_SCHEDULES", "MODELS", "OBJECTIVES", "OPTIMIZERS", "Objective",
           "build_models", "count_params", "has_batchnorm", "lr_factor", "make_optimizer"]


def build_models(cfg) -> tuple[nn.Module, nn.Module]:
    """Build G and D for a resolved Config on the CPU, initialised as `cfg.init` says; the class-
    conditional variants (gankit.nets.conditional) when cfg.num_classes > 0. Draws from torch's
    global RNG: seed it first for reproducible weights."""
    if cfg.num_classes:
        G, D = conditional_models(MODELS[cfg.model].build, cfg)
    else:
        G, D = MODELS[cfg.model].build(cfg)
    if cfg.init == "normal02" and not MODELS[cfg.model].own_init:
        init_normal02(G)
        init_normal02(D)
    if cfg.d_norm == "spectral":
        spectral_normalize(D)
    return G, D
