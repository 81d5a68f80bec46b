"""`gankit tune`: a hyperparameter study on Optuna, each trial an ordinary run folder.

    runs/<study>/study.json           what the study searches (preset, space, budget, seed, storage)
    runs/<study>/study.journal        Optuna's storage when no --storage URL is given
    runs/<study>/NNNNN-trialTTT-...   one run folder per trial (config.json, quality.jsonl, ...)
    runs/<study>/results.json         every trial: params, state, best FID, balance index, run folder
    runs/<study>/best.json            the best trial's config: `gankit train --config best.json`
    runs/<study>/*.png                Optuna's history, importances and parallel coordinates; balance vs FID

A trial trains the preset with the drawn parameters for the study's budget and is scored by the
best FID of its in-training evaluations (the evaluator's fid_fmnist5k at the default eval_n).
Each evaluation is reported to Optuna's pruner, which may end a poor trial early (it then ends
as a finished run does). Several processes given the same --name share the work through the
storage: each asks Optuna for the next trial, so none is run twice. Ctrl-C checkpoints the
running trial and marks it interrupted; the same command later resumes that run and goes on.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import preset_config
from ..data import load_split
from ..errors import ConfigError, GankitError
from ..files import atomic_write_text
from ..runs import fid_key, pyplot, read_stats
from ..runs import balance
from ..runs.balance import summarize
from ..training import TrainingStopped, train
from .space import Param, apply, parse_space

STUDY_FILE = "study.json"


@dataclass
class Settings:
    """What every trial of a study shares; saved in the storage and in study.json, so a worker
    joining with `--name S` alone takes them, and one that asks for different ones is refused."""
    preset: str
    params: list[str]  # the --param texts
    trials: int
    epochs: int | None = None  # the per-trial budget: one of epochs, steps, minutes
    steps: int | None = None
    minutes: float | None = None
    evals: int = 4  # evaluations per trial (what the pruner sees); with --minutes: each epoch and the end
    seed: int = 0  # every trial's run seed (the trials differ in their parameters, not their seed)
    eval_n: int | None = None  # samples per evaluation (None: the preset's)
    pruner: str = "median"  # median | none
    fixed: dict = field(default_factory=dict)  # other overrides for every trial (device, precision, ...)

    def budget(self) -> dict:
        return {k: v for k, v in (("epochs", self.epochs), ("steps", self.steps), ("minutes", self.minutes)) if v}

    def describe_budget(self) -> str:
        return ", ".join(f"{v:g} {k}" for k, v in self.budget().items())


# ---- storage -------------------------------------------------------------------------------------
def redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url  # (comes with Optuna, the [tune] extra)
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_storage(storage: str | None, folder: Path):
    """Optuna storage: a journal file (default: <folder>/study.journal; processes on one machine
    share it through a file lock), or a database URL (postgresql://..., sqlite:///...) for workers
    on several machines. An unreachable database fails here, with one line."""
    import optuna  # (the [tune] extra)
    from optuna.storages.journal import JournalFileBackend, JournalStorage  # (the [tune] extra)
    if storage is None or "://" not in storage:
        path = Path(storage) if storage else folder / "study.journal"
        if not path.parent.is_dir():
            raise ConfigError(f"--storage {path}: folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path))), str(path)
    kwargs = {"connect_args": {"connect_timeout": 10}} if storage.startswith("postgresql") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # (heartbeat_interval)
            return optuna.storages.RDBStorage(storage, engine_kwargs=kwargs, heartbeat_interval=60,
                                              grace_period=180), redact(storage)
    except ImportError as e:
        raise ConfigError(f"--storage {redact(storage)}: the database driver is missing ({e}); "
                          f"pip install 'gankit[tune]'") from None
    except Exception as e:  # sqlalchemy's OperationalError, ArgumentError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage {redact(storage)}: cannot open the database: {first}") from None


def load_optuna():
    try:
        import optuna  # (the [tune] extra: a friendly message when it is missing)
    except ImportError:
        raise GankitError("gankit tune needs Optuna: pip install 'gankit[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ---- the study -----------------------------------------------------------------------------------
def open_study(name: str, out_dir: str | Path, storage: str | None, settings: Settings | None):
    """Create study `name`, or join it. `settings` None: join an existing study with its own.
    Every check happens here, before a trial starts."""
    optuna = load_optuna()
    folder = Path(out_dir) / name
    if settings is not None:
        check_settings(settings)  # bad input fails before any folder or storage is made
    elif not folder.is_dir() and (storage is None or "://" not in storage):
        raise ConfigError(f"study '{name}' does not exist in {out_dir}; give --preset and --param to start it")
    if storage is not None and "://" in storage:
        store, where = open_storage(storage, folder)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        store, where = open_storage(storage, folder)
    saved = None
    if name in optuna.get_all_study_names(store):
        attrs = optuna.load_study(study_name=name, storage=store).user_attrs
        saved = Settings(**attrs["settings"]) if "settings" in attrs else None
    if settings is None:
        if saved is None:
            raise ConfigError(f"study '{name}' is not in {where}; give --preset and --param to start it")
        settings = saved
    elif saved is not None and asdict(saved) != asdict(settings):
        diff = sorted(k for k, v in asdict(settings).items() if asdict(saved)[k] != v)
        raise ConfigError(f"study '{name}' in {where} was started with other {', '.join(diff)}; join it with "
                          f"`gankit tune --name {name}` alone, or name a new study")
    space = check_settings(settings)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if settings.pruner == "median"
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=name, storage=store, direction="minimize", load_if_exists=True,
                                pruner=pruner)
    if saved is None:
        study.set_user_attr("settings", asdict(settings))
    atomic_write_text(folder / STUDY_FILE, json.dumps({"study": name, "storage": where, **asdict(settings)},
                                                      indent=2) + "\n")
    return study, settings, space, folder


def check_settings(s: Settings) -> list[Param]:
    if s.trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {s.trials}")
    if len(s.budget()) != 1:
        raise ConfigError("give one trial budget: --epochs, --steps or --minutes")
    if s.evals < 1:
        raise ConfigError(f"--evals must be >= 1, got {s.evals}")
    if s.pruner not in ("median", "none"):
        raise ConfigError(f"unknown pruner '{s.pruner}'; valid: median, none")
    if not s.params:
        raise ConfigError("nothing to search: give at least one --param, e.g. --param d_lr=log:1e-5:1e-3")
    base = {"preset": s.preset, **s.fixed, **s.budget(), "seed": s.seed, **({"eval_n": s.eval_n} if s.eval_n else {})}
    cfg = preset_config(s.preset, **{k: v for k, v in base.items() if k != "preset"})
    cfg.validate()
    if not cfg.judged_in_training():
        raise ConfigError(f"preset {s.preset} trains {cfg.dataset} at {cfg.image_size}x{cfg.image_size}, which "
                          f"gankit's evaluators do not judge during training, so trials could not be scored")
    space = parse_space(s.params, base)
    if all(p.kind == "choice" and len(p.choices) == 1 for p in space):
        raise ConfigError("nothing to search: every --param has a single value (every trial would be the same "
                          "run); give a range or several values")
    return space


def trial_config(s: Settings, params: dict, folder: Path):
    """A trial's config: the preset, the study's fixed values and budget, the drawn parameters,
    evaluations spread over the budget."""
    values = apply({**s.fixed, **s.budget(), "seed": s.seed, "out_dir": str(folder),
                    **({"eval_n": s.eval_n} if s.eval_n else {})}, params)
    cfg = preset_config(s.preset, **values)
    if s.minutes is None:
        total = cfg.steps or cfg.epochs * (_n_train(cfg.dataset, cfg.data_root) // cfg.batch_size)
        cfg.eval_every = max(1, -(-total // s.evals))  # (the last step is always evaluated)
    return cfg.validate()


@functools.lru_cache(maxsize=4)
def _n_train(dataset: str, data_root: str | None) -> int:
    """Training images of a dataset (tunable fields cannot change it), read once per process."""
    return len(load_split(dataset, "train", data_root)[0])


def _trial_run(folder: Path, number: int) -> Path | None:
    found = sorted(folder.glob(f"*-trial{number:03d}-*"))
    return found[0] if found else None


def _counts(t) -> bool:
    """Whether a trial counts towards --trials: not an interrupted one (it is redone), not one
    asked for beyond the number (surplus), not one waiting to start."""
    return not (t.user_attrs.get("interrupted") or t.user_attrs.get("surplus")) and t.state.name != "WAITING"


def _to_resume(study) -> list:
    """Interrupted trials whose run no later trial has taken up yet."""
    taken = {t.user_attrs.get("resumes") for t in study.get_trials(deepcopy=False)}
    return [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("interrupted") and t.number not in taken and t.user_attrs.get("run")]


def show_value(v) -> str:
    """A searched value for the terminal: 3 significant digits, more where those would hide it
    (0.9995 is not "1": the digits also keep 1 - v within 1 %)."""
    if not isinstance(v, float):
        return str(v)
    for digits in range(3, 10):
        text = f"{v:.{digits}g}"
        err = abs(float(text) - v)
        if err <= 0.01 * abs(v) and err <= 0.01 * abs(1 - v):
            break
    return text


def show_params(params: dict) -> str:
    return " ".join(f"{k}={show_value(v)}" for k, v in params.items())


def run_trial(study, trial, s: Settings, space: list[Param], folder: Path, say=print) -> None:
    """Train one trial and tell Optuna its result (COMPLETE, PRUNED or FAIL)."""
    optuna = load_optuna()
    t0 = time.perf_counter()
    params = {p.name: p.suggest(trial) for p in space}
    shown = show_params(params)
    try:
        cfg = trial_config(s, params, folder)
    except ConfigError as e:  # a combination no single value showed (e.g. two choices that exclude each other)
        trial.set_user_attr("error", str(e))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        say(f"trial {trial.number}: {shown}: not a valid config ({e})")
        return
    resume = trial.user_attrs.get("resume_run")
    pruned, key, reports = [], None, 0

    def on_quality(row: dict) -> bool:
        # Judged from its second evaluation on: at the first, a slow starter (a long EMA, a low lr)
        # looks worse than it will be (a 0.9995 EMA still weighs G's first steps at step ~900).
        nonlocal key, reports
        key = key or fid_key([row])
        trial.report(row[key], row["step"])
        reports += 1
        if reports >= 2 and trial.should_prune():
            pruned.append(row["step"])
        return bool(pruned)

    if resume:  # what the interrupted trial had already measured
        for row in read_stats(Path(resume), "quality.jsonl"):
            on_quality(row)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # the run's own log is in its folder
            run_dir = train(cfg, resume=resume, command=["gankit", "tune", "--name", study.study_name,
                                                         f"(trial {trial.number})"],
                            progress=False, on_quality=on_quality, run_name=f"trial{trial.number:03d}-{s.preset}")
    except TrainingStopped as e:
        run = _trial_run(folder, trial.number) or (Path(resume) if resume else None)
        if e.exit_code >= 128:  # a signal: resumable
            if run:
                trial.set_user_attr("run", str(run))
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        trial.set_user_attr("error", str(e))
        if run:
            trial.set_user_attr("run", str(run))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        say(f"trial {trial.number}: {shown}: failed: {e}")
        return
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training steps
        trial.set_user_attr("interrupted", True)
        if run := _trial_run(folder, trial.number) or resume:
            trial.set_user_attr("run", str(run))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    quality = read_stats(run_dir, "quality.jsonl")
    key = fid_key(quality)
    best = min(r[key] for r in quality)
    stats = read_stats(run_dir)
    trial.set_user_attr("run", str(run_dir))
    trial.set_user_attr("metric", key)
    trial.set_user_attr("final_fid", quality[-1][key])
    trial.set_user_attr("steps", stats[-1]["step"] if stats else 0)
    trial.set_user_attr("train_time_s", quality[-1]["train_time_s"])
    for k, v in summarize(stats, cfg.n_critic).items():
        trial.set_user_attr(k, v)
    if pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, best)
    say(f"trial {trial.number}: {shown} -> best {key} {best:.2f}"
        + (f" (pruned at step {pruned[0]})" if pruned else "") + f", {time.perf_counter() - t0:.0f} s  [{run_dir}]")


def optimize(study, s: Settings, space: list[Param], folder: Path, say=print) -> int:
    """Run trials until the study has s.trials (counting every worker's), first taking up runs
    that an interrupt left behind. Returns how many this process ran."""
    optuna = load_optuna()
    ran = 0
    while True:
        for old in _to_resume(study):
            study.enqueue_trial(old.params, user_attrs={"resume_run": old.user_attrs["run"], "resumes": old.number},
                                skip_if_exists=False)
            break
        trials = study.get_trials(deepcopy=False)
        if sum(map(_counts, trials)) >= s.trials and not any(t.state.name == "WAITING" for t in trials):
            return ran
        trial = study.ask()
        # Several workers may ask at once: the storage numbers trials in order, so a trial with
        # enough counted trials before it is surplus and ends unrun (exactly s.trials are run).
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if trial.user_attrs.get("resumes") is None and sum(map(_counts, before)) >= s.trials:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return ran
        if (resumes := trial.user_attrs.get("resumes")) is not None:
            say(f"trial {trial.number}: resuming trial {resumes}'s run {trial.user_attrs['resume_run']}")
        run_trial(study, trial, s, space, folder, say)
        ran += 1


# ---- results -------------------------------------------------------------------------------------
def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("WAITING", "RUNNING") or not _counts(t):
            continue
        a = t.user_attrs
        rows.append({"trial": t.number, "state": t.state.name.lower(), "params": t.params,
                     "best_fid": t.value if t.state.name == "COMPLETE" else
                     (min(t.intermediate_values.values()) if t.intermediate_values else None),
                     **{k: a.get(k) for k in ("metric", "final_fid", "steps", "train_time_s", "balance_index",
                                              "crossings_per_epoch", "g_above", "evenness", "run", "error")}})
    return rows


def write_results(study, s: Settings, folder: Path) -> dict:
    """results.json, best.json, the plots and the balance-vs-FID figure; returns the results."""
    rows = trial_rows(study)
    done = [r for r in rows if r["state"] == "complete"]
    result = {"study": study.study_name, "preset": s.preset, "budget": s.describe_budget(), "params": s.params,
              "trials": rows, "metric": next((r["metric"] for r in rows if r["metric"]), None)}
    if done:
        best = min(done, key=lambda r: r["best_fid"])
        saved = json.loads((Path(best["run"]) / "config.json").read_text())["config"]
        saved["out_dir"] = "runs"
        atomic_write_text(folder / "best.json", json.dumps(
            {"config": saved, "study": study.study_name, "trial": best["trial"], "params": best["params"],
             result["metric"]: best["best_fid"], "run": best["run"],
             "how": "gankit train --config best.json trains this trial's config again (same seed and budget)"},
            indent=2) + "\n")
        result["best"] = {k: best[k] for k in ("trial", "params", "best_fid", "run")}
    # Completed trials only: a pruned trial's FID and index cover a shorter stretch of training.
    points = [(r["balance_index"], r["best_fid"]) for r in done if r["balance_index"] is not None]
    result["balance"] = balance.correlate(points)
    if points:
        balance.scatter(points, folder / "balance_vs_fid.png", f"study {study.study_name}: completed trials",
                        result["metric"] or "FID")
    plt = pyplot()
    import matplotlib  # (slow to import; only the study's figures need it)
    import optuna.visualization.matplotlib as ov  # (the [tune] extra)
    figures = {"history.png": ov.plot_optimization_history, "parallel.png": ov.plot_parallel_coordinate}
    if len(done) >= 2 and len(s.params) >= 1:
        figures["importances.png"] = ov.plot_param_importances
    for name, plot in figures.items():
        if not done:
            break
        # (Optuna marks its matplotlib plots experimental, and sets a global style: both kept to here)
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as e:  # e.g. importances when every value is equal
                result.setdefault("plot_errors", {})[name] = str(e)
                continue
        ax = ax.flat[0] if hasattr(ax, "flat") else ax
        if name == "history.png":
            ax.set_ylabel(f"best {result['metric']} of the trial")
        fig = ax.figure
        fig.set_size_inches(8, 4.5)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
    atomic_write_text(folder / "results.json", json.dumps(result, indent=1, default=_json) + "\n")
    return result


def _json(v):
    return None if isinstance(v, float) and not math.isfinite(v) else str(v)


def print_table(result: dict, say=print) -> None:
    rows = result["trials"]
    if not rows:
        say("no finished trials yet")
        return
    names = sorted({k for r in rows for k in r["params"]})
    metric = result["metric"] or "fid"
    header = ["trial", "state"] + names + [f"best {metric}", "balance", "training"]
    body = [[str(r["trial"]), r["state"]]
            + [show_value(r["params"].get(n, "-")) for n in names]
            + [f"{r['best_fid']:.2f}" if r["best_fid"] is not None else "-",
               f"{r['balance_index']:.3f}" if r["balance_index"] is not None else "-",
               f"{r['train_time_s']:.0f} s" if r["train_time_s"] else "-"] for r in rows]
    widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]
    for line in [header] + body:
        say("  ".join(c.rjust(w) for c, w in zip(line, widths)))
    if "best" in result:
        b = result["best"]
        say(f"best: trial {b['trial']}, {metric} {b['best_fid']:.2f}: "
            + show_params(b["params"]))
    c = result["balance"]
    if c["rho"] is not None:
        say(f"balance index vs {metric} over {c['n']} completed trials: Spearman rho {c['rho']:+.2f} (p = {c['p']:.2g})")
    elif c["n"]:
        say(f"balance index vs {metric}: no rank correlation from {c['n']} trial(s) (too few, or one value for all)")
