"""gankit: train, study and evaluate GANs on small image datasets.

    import gankit
    run = gankit.train("default", minutes=3)      # a Run: .path, .metrics, .generator
    G = gankit.load(run)                           # a GANPipeline
    gankit.save_images(G.sample(8, seed=0), "eight.png")
    gankit.evaluate(G, n=5000)                     # {"fid_fmnist5k": ..., ...}
"""
from .api import GANPipeline, Run, evaluate, load, save_images, train
from .config import PRESETS, Config, preset_config
from .version import __version__

__all__ = ["Config", "GANPipeline", "PRESETS", "Run", "__version__", "evaluate", "load", "preset_config",
           "save_images", "train"]
