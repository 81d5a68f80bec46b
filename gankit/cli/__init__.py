"""`gankit` command line: a thin shell over the Python API.

    gankit train [--preset NAME | --config FILE | --resume RUN_DIR] [--FIELD VALUE ...] [--dry-run]
    gankit presets
    gankit sample SRC [--n 8 --seed S | --z FILE]
    gankit explore nudge|sweep|interpolate|arithmetic|rank SRC ...
    gankit eval SRC [--metrics ...] [--n 10000]
    gankit compare RUN RUN ...
    gankit evaluator train --dataset fashion-mnist --out DIR
    gankit tune --name S [--preset P --param NAME=SPEC ... --trials N --epochs E] [--storage URL]
    gankit grid --presets P [P ...] [--vary FIELD=a,b] [--seeds 0 1 2] [--epochs E]
    gankit report RUN [RUN ...] [--out report.html] [--md]
    gankit app RUN [RUN ...] [--host 127.0.0.1] [--port P]

One vocabulary across commands: --steps is always training steps; --frames the images along a
latent path; --out where this command writes its result (a file or a folder, as its help says);
--out-dir the folder under which new run folders are numbered; --name a study's or grid's name;
--device the same choices and default (auto) everywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..app import launch
from ..config import PRESETS, Config, chosen_preset, field_types, preset_config
from ..errors import ConfigError, GankitError
from ..nets import build_models, count_params
from ..report import build_report
from ..runs import check_run_dir
from ..training import check_start, train
from ..version import __version__
from . import control as control_cli, latent as latent_cli, metrics as metrics_cli, tuning as tuning_cli
from .flags import Parser, add_config_arguments, add_device, renamed


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a GAN (see `gankit presets`)",
                       description="Train a GAN. Start from a preset and override any Config field "
                                   "with its flag; the resolved config is printed and saved in the run folder. "
                                   "Each flag's help shows the value the `default` preset runs with; another "
                                   "preset sets its own (`gankit train --preset P --dry-run` prints them all).")
    p.add_argument("--preset", default=None, help="named experiment (`gankit presets` lists them); default: 'default', "
                                                  "or with --data-root a folder of images, the folder preset of its size")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="start from a saved config instead of a preset: a run's config.json, or the best.json "
                        "of `gankit tune` (flags still override it)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its newest valid checkpoint "
                        "(--epochs/--steps may be raised to train longer)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_train)
    add_config_arguments(p.add_argument_group("config fields (override the preset)"))


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in field_types() if getattr(args, k, None) is not None}


def cmd_train(args) -> int:
    overrides = _overrides(args)
    if sum(x is not None for x in (args.preset, args.config, args.resume)) > 1:
        raise GankitError("--preset, --config and --resume exclude each other: a resumed run uses its own config, "
                          "a saved config names its preset")
    if args.resume:
        run_dir = check_run_dir(args.resume)
        cfg = Config.from_dict({**read_config_file(run_dir / "config.json"), **overrides},
                               source=str(run_dir / "config.json")).resolved()
    elif args.config:
        try:
            cfg = Config.from_dict({**read_config_file(args.config), **overrides}, source=args.config).resolved()
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(str(e) if str(e).startswith(args.config) else f"{args.config}: {e}") from None
    else:
        preset = chosen_preset(args.preset, overrides, say=lambda line: print(line, file=sys.stderr))
        cfg = preset_config(preset, **overrides)
    cfg.validate()
    check_data_root(cfg)
    images = check_start(cfg, args.resume, world=int(os.environ.get("WORLD_SIZE", "1")))  # before any output
    print(json.dumps(cfg.to_dict(), indent=2))
    if args.dry_run:
        checked = (f"{cfg.dataset} is on no disk here: a start downloads it, so its files were not checked"
                   if images < 0 else f"{images} training images, --subset and any resume checked")
        print(f"ok: this config starts ({checked}); nothing was trained or written", file=sys.stderr)
        return 0
    train(cfg, resume=args.resume, command=["gankit", *args.argv])  # as a user would type it again
    return 0


def check_data_root(cfg: Config) -> None:
    """A --data-root that is not a folder is refused at once (a dry run too), not at the first batch."""
    if cfg.data_root and not Path(cfg.data_root).expanduser().is_dir():
        raise ConfigError(f"--data-root {cfg.data_root}: no such folder")


def read_config_file(path: str | Path) -> dict:
    """The config fields of a saved config: {"config": {...}, ...} as run folders and `gankit tune`
    write it, or the fields alone. Errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise GankitError(f"{p}: no such config file")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise GankitError(f"{p}: not a JSON file ({e})")
    fields = data.get("config", data) if isinstance(data, dict) else None
    if not isinstance(fields, dict):
        raise GankitError(f"{p}: expected a JSON object of config fields (or {{\"config\": {{...}}}})")
    return fields


def cmd_presets(args) -> int:
    keys = ["model", "objective", "batch_size", "n_critic"]
    rows = []
    for name, values in PRESETS.items():
        cfg = preset_config(name)
        opt = f"{cfg.d_optimizer} {cfg.d_lr:g}" + (f"/{cfg.g_lr:g}" if cfg.g_lr != cfg.d_lr else "")
        G, D = build_models(cfg.resolved())
        size = f"{count_params(G) / 1e6:.2f}M/{count_params(D) / 1e6:.2f}M"
        rows.append([name] + [str(getattr(cfg, k)) for k in keys] + [size, budget(cfg), opt, values["about"]])
    header = ["preset"] + keys + ["params G/D", "budget", "optimizer lr", "about"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    for r in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


def budget(cfg: Config) -> str:
    """What ends a preset's training, as the preset sets it: a time budget, else steps, else epochs."""
    if cfg.minutes:
        return f"{cfg.minutes:g} min"
    return f"{cfg.steps} steps" if cfg.steps > 0 else f"{cfg.epochs} epochs" if cfg.epochs else "none"


def cmd_report(args) -> int:
    out = args.out or (str(Path(args.runs[0]) / "report.html") if len(args.runs) == 1 else "report.html")
    if args.md:
        out = str(Path(out).with_suffix(".md"))
    path = build_report(args.runs, out, markdown=args.md)
    print(f"report: {path}" + (f" (images in {path.with_name(path.stem + '_files')})" if args.md else ""))
    return 0


def cmd_app(args) -> int:
    if args.sliders < 1:
        raise GankitError(f"--sliders must be >= 1, got {args.sliders}")
    if args.port is not None and not 0 < args.port < 65536:
        raise GankitError(f"--port must be in 1..65535, got {args.port}")
    launch(args.runs, host=args.host, port=args.port, device=args.device, sliders=args.sliders)
    return 0


def _app_parser(sub) -> None:
    p = sub.add_parser("app", help="the latent explorer of runs as a local web page (needs gankit[app])",
                       description="Serve an interactive latent explorer of the runs: sliders on the most "
                                   "influential latent dimensions, the seed's 8 images, lab 4's nudge sheet, slerp "
                                   "between seeds, classes of a conditional run; save z and the image. Only the "
                                   "runs named here can be opened from the page.")
    p.add_argument("runs", nargs="+", help="run folders (or generator.safetensors files)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--sliders", type=int, default=8, help="sliders on the most influential dimensions (default: 8)")
    add_device(p)
    p.set_defaults(func=cmd_app)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gankit", description="Train, study and evaluate GANs on small image datasets.",
                    epilog="`gankit COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    sub.add_parser("presets", help="list the named experiments (presets) with their model, objective and budget",
                   description="List the presets: each a course-lab experiment (or gankit's recipe) by name, "
                               "for `gankit train --preset NAME`.").set_defaults(func=cmd_presets)
    control_cli.add_parsers(sub, latent_cli.add_parsers(sub))
    metrics_cli.add_parsers(sub)
    tuning_cli.add_parsers(sub)
    p = sub.add_parser("report", help="the lab report of a run (or a comparison of runs) as one HTML file",
                       description="Write the lab report of one run, or a comparison of several runs, tuning "
                                   "studies or grids, as one self-contained HTML file (or Markdown with --md).")
    p.add_argument("runs", nargs="+", help="run folders (or a study's or grid's folder)")
    renamed(p, "--output", "--out")
    p.add_argument("-o", "--out", default=None,
                   help="report file (default: RUN/report.html for one run, ./report.html for several); "
                        "when it exists, FILE-2, FILE-3, ... are written instead: nothing is replaced")
    p.add_argument("--md", action="store_true", help="write Markdown with its PNGs in a folder beside it instead")
    p.set_defaults(func=cmd_report)
    _app_parser(sub)
    return parser


RENAMED_COMMANDS = {"sweep": "gankit sweep was renamed gankit grid (presets x field values x seeds); a latent "
                             "sweep is gankit explore sweep"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in RENAMED_COMMANDS:
        print(f"gankit: error: {RENAMED_COMMANDS[argv[0]]}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    try:
        return args.func(args)
    except GankitError as e:
        code = getattr(e, "exit_code", 2)
        if getattr(e, "quiet", False):
            return code
        print(f"gankit {args.command}: error: {e}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"gankit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as e:  # the machine refused: a file, a permission, the disk, the memory
        what = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else f"{type(e).__name__}: {e}"
        print(f"gankit {args.command}: error: {what}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line, and the traceback only when asked for
        if os.environ.get("GANKIT_DEBUG"):
            raise
        first = (str(e).splitlines() or [""])[0][:200]
        print(f"gankit {args.command}: internal error ({type(e).__name__}: {first}); this is a bug in gankit, "
              f"please report it (GANKIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
