"""The training engine: train(cfg) -> run folder. The loop (loop.py) and what it runs on: the
setup before it (setup.py), its context and schedule (context.py), the maintenance after each
step (maintenance.py), the networks' and counters' state (state.py), checkpoints
(checkpoint.py), the run folder's output (output.py), DDP (dist.py) and the balance index
(balance.py). It uses the nets, the data, the metrics and plain sampling; it never imports the
latent studies, the app, the studies or the CLI."""
from .loop import TrainingStopped, train
from .setup import RESUMABLE_CHANGES, check_start, total_steps

__all__ = ["RESUMABLE_CHANGES", "TrainingStopped", "check_start", "total_steps", "train"]
