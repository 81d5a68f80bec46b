"""Tuning: what runs many trainings (the [tune] extra): `gankit tune` (tune.py, an Optuna study over a
search space, space.py) and `gankit grid` (sweep.py, presets x field values x seeds, mean ± std). Optuna
is imported when a study opens, so this package imports without the extra."""
