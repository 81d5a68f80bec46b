"""What every gankit command line shares: the parser whose refusals are one line (exit 2), renamed
flags that point to their new name, the shared options (--device, --out), and the `gankit train`
flags, one `--field-name` per Config field, with the field's help, type and choices."""
from __future__ import annotations

import argparse
import math
import sys

from ..config import base_type, field_choices, field_help, field_types, preset_config

DEVICE_HELP = "where to run: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps (default: auto)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line refusals: `gankit CMD: error: ...` and exit 2, before any work."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class Renamed(argparse.Action):
    """An old spelling of a flag: refused with the new one named."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, nargs=argparse.REMAINDER, help=argparse.SUPPRESS, default=None)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed {self.new}")


def renamed(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    parser.add_argument(old, action=Renamed, new=new, dest=f"_renamed_{old.strip('-').replace('-', '_')}")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_config_arguments(parser) -> None:
    """One `--field-name` flag per Config field; defaults stay None so only the flags given
    override the preset. The help shows the value the `default` preset runs with."""
    helps, choices = field_help(), field_choices()
    shown = preset_config("default")
    for name, tp in field_types().items():
        if name == "preset":
            continue
        flag = "--" + name.replace("_", "-")
        kind = base_type(tp)
        value = getattr(shown, name)
        shown_value = " ".join(map(str, value)) if isinstance(value, tuple) else value
        h = helps.get(name, "") + (f" (the default preset: {shown_value})" if value is not None else "")
        h = h.replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=h)
        elif kind is tuple:
            parser.add_argument(flag, dest=name, type=float, nargs=2, metavar=("B1", "B2"), default=None, help=h)
        elif name in choices:
            parser.add_argument(flag, dest=name, type=_parser_for(kind, name), choices=choices[name], default=None,
                                help=h)
        else:
            parser.add_argument(flag, dest=name, type=_parser_for(kind, name), default=None, help=h,
                                metavar=name.upper())


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
