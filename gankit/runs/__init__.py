"""Run folders: their layout, the stats log and the one reading of a folder (`Run`) in folder.py;
the pictures drawn from them in figures.py; the records of latent studies in records.py."""
from .figures import (comparison_figure, image_grid, plot_curves, plot_milestones, plot_overfitting, pyplot,
                      save_figure, save_grid)
from .folder import (MILESTONES, RUN_RE, Run, StatsLog, Study, check_run_dir, create_run_dir, fid_key, headline,
                     last_grid, milestone_path, read_json, read_run_config, read_stats, read_studies, truncate_after,
                     write_models_txt)
from .records import new_study_folder, write_study_record

__all__ = ["MILESTONES", "RUN_RE", "Run", "StatsLog", "Study", "check_run_dir", "comparison_figure", "create_run_dir",
           "fid_key", "headline", "image_grid", "last_grid", "milestone_path", "new_study_folder", "plot_curves",
           "plot_milestones", "plot_overfitting", "pyplot", "read_json", "read_run_config", "read_stats", "read_studies",
           "save_figure", "save_grid", "truncate_after", "write_models_txt", "write_study_record"]
