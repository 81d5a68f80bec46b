"""gankit: train, study and evaluate GANs on small image datasets."""
__version__ = "0.1.0"

from .config import PRESETS, Config, preset_config  # noqa: E402
from .train import train  # noqa: E402

__all__ = ["Config", "PRESETS", "preset_config", "train", "__version__"]
