"""Studies that run many trainings (the [tune] extra): `gankit tune` (tune.py, an Optuna study over a
search space, space.py) and `gankit sweep` (sweep.py, presets x a grid x seeds, mean ± std). Optuna
is imported when a study opens, so this package imports without the extra."""
