"""The `gankit train` flags, one `--field-name` per Config field, with the field's help and type."""
from __future__ import annotations

import argparse
import math

from ..config import Config, base_type, field_help, field_types
from ..data import DATASET_CHOICES
from ..nets import MODELS, OBJECTIVES, OPTIMIZERS


def add_config_arguments(parser) -> None:
    """One `--field-name` flag per Config field; defaults stay None so only the flags given
    override the preset."""
    helps = field_help()
    registries = {"dataset": DATASET_CHOICES, "model": MODELS, "objective": OBJECTIVES, "g_optimizer": OPTIMIZERS,
                  "d_optimizer": OPTIMIZERS}
    defaults = Config()
    for name, tp in field_types().items():
        if name == "preset":
            continue
        flag = "--" + name.replace("_", "-")
        kind = base_type(tp)
        h = helps.get(name, "")
        if name in registries:
            h = "one of: " + ", ".join(registries[name])
        default = getattr(defaults, name)
        h += f" [default {' '.join(map(str, default)) if isinstance(default, tuple) else default}; presets may change it]"
        h = h.replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=h)
        elif kind is tuple:
            parser.add_argument(flag, dest=name, type=float, nargs=2, metavar=("B1", "B2"),
                                default=None, help=h)
        else:
            parser.add_argument(flag, dest=name, type=_parser_for(kind, name), default=None,
                                help=h, metavar=name.upper())


def _parser_for(kind, name):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} for --{name.replace('_', '-')}, got '{text}'")
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be finite, got '{text}'")
        return value
    parse.__name__ = kind.__name__
    return parse
