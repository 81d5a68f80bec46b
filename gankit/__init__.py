"""gankit: train, study and evaluate GANs on small image datasets."""
from .config import PRESETS, Config, preset_config
from .training import train
from .version import __version__

__all__ = ["Config", "PRESETS", "preset_config", "train", "__version__"]
