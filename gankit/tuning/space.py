"""A tuning study's search space, written on the command line one `--param` at a time:

    d_lr=log:1e-5:1e-3        a float drawn log-uniformly from [1e-5, 1e-3]
    g_betas.0=0:0.9           a float drawn uniformly (g_betas.0 is the first of G's Adam betas)
    n_critic=int:1:5          a whole number in [1, 5]
    objective=bce,hinge       one of the listed values (parsed as the field's type)

Names are Config fields (`gankit train --help` lists them), with `.0`/`.1` for one of the two
betas. Every value is checked against the preset before a trial starts: a categorical value
and both ends of a range must make a valid config on their own.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from ..config import Config, base_type, field_types, preset_config
from ..errors import ConfigError

# What a trial's budget, its measurement or the run's bookkeeping sets: not searched.
NOT_TUNABLE = {"preset", "dataset", "data_root", "channels", "image_size", "bad_files", "num_classes", "epochs",
               "steps", "minutes", "seed", "device", "out_dir", "log_every", "ckpt_every", "keep", "grid_size",
               "eval_every", "eval_n", "deterministic", "on_nan"}


@dataclass(frozen=True)
class Param:
    name: str  # a Config field, or g_betas.0 / d_betas.1
    kind: str  # log | float | int | choice
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """The value an Optuna trial draws for this parameter."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"{self.name}={','.join(map(str, self.choices))}"
        return f"{self.name}={'' if self.kind == 'float' else self.kind + ':'}{self.low:g}:{self.high:g}"


def apply(values: dict, params: dict) -> dict:
    """Config overrides `values` with the searched `params` set (g_betas.0 sets one of the pair)."""
    out = dict(values)
    for name, value in params.items():
        field, _, index = name.partition(".")
        if index:
            pair = list(out.get(field, getattr(Config(), field)))
            pair[int(index)] = value
            out[field] = tuple(pair)
        else:
            out[field] = value
    return out


def _field_kind(name: str, text: str) -> tuple[str, type]:
    field, dot, index = name.partition(".")
    types = field_types()
    if field not in types or field == "preset":
        near = difflib.get_close_matches(field, list(types), n=3)
        raise ConfigError(f"--param {text}: unknown config field '{field}'"
                          + (f" (did you mean {', '.join(near)}?)" if near else "; `gankit train --help` lists them"))
    if field in NOT_TUNABLE:
        raise ConfigError(f"--param {text}: {field} is not searched: the trial budget (--epochs/--steps/--minutes), "
                          f"the run seed (--seed) and the measurement are the study's, the same for every trial")
    kind = base_type(types[field])
    if kind is tuple:
        if not dot or index not in ("0", "1"):
            raise ConfigError(f"--param {text}: {field} is a pair; search one of it as {field}.0 or {field}.1")
        return name, float
    if dot:
        raise ConfigError(f"--param {text}: {field} is a single value, not a pair")
    return name, kind


def _number(text: str, whole: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--param {whole}: '{text}' is not a number (expected {spec})") from None
    if not math.isfinite(value):
        raise ConfigError(f"--param {whole}: '{text}' is not a finite number")
    return value


def _value(text: str, kind: type, whole: str):
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"--param {whole}: '{text}' is not true or false")
        return text.lower() == "true"
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"--param {whole}: '{text}' is not {'a whole number' if kind is int else 'a number'}") from None


def parse_param(text: str) -> Param:
    """One --param NAME=SPEC, checked for syntax (ranges not empty, log ranges positive)."""
    name, eq, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not eq or not name or not spec:
        raise ConfigError(f"--param {text}: expected NAME=SPEC, e.g. d_lr=log:1e-5:1e-3, g_betas.0=0:0.9, "
                          f"n_critic=int:1:5 or objective=bce,hinge")
    name, kind = _field_kind(name, text)
    parts = spec.split(":")
    if len(parts) == 1:
        choices = tuple(_value(v.strip(), kind, text) for v in spec.split(",") if v.strip())
        if not choices:
            raise ConfigError(f"--param {text}: no values listed")
        if len(set(choices)) != len(choices):
            raise ConfigError(f"--param {text}: a value is listed twice")
        return Param(name, "choice", choices=choices)
    if len(parts) == 2:
        parts = ["int" if kind is int else "float", *parts]
    if len(parts) != 3 or parts[0] not in ("log", "float", "int"):
        raise ConfigError(f"--param {text}: a range is LOW:HIGH, log:LOW:HIGH or int:LOW:HIGH")
    how = parts[0]
    if kind not in (int, float):
        raise ConfigError(f"--param {text}: {name} takes {kind.__name__} values; list them (a,b,c) instead of a range")
    if how == "int" and kind is float:
        how = "float"  # (int:1:3 of a float field is the range 1..3)
    spec_text = f"{how}:LOW:HIGH"
    low, high = (_number(p, text, spec_text) for p in parts[1:])
    if how == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"--param {text}: an int range needs whole numbers")
    if not low < high:
        raise ConfigError(f"--param {text}: empty range: LOW ({low:g}) must be below HIGH ({high:g})")
    if how == "log" and low <= 0:
        raise ConfigError(f"--param {text}: a log range needs LOW > 0, got {low:g}")
    return Param(name, how, low, high)


def parse_space(texts: list[str], base: dict) -> list[Param]:
    """The --param list, each value checked against the preset values `base` (a dict of
    overrides for preset_config): every listed value and both ends of every range must make a
    config that validates, so a bad value fails here, before any trial."""
    space = [parse_param(t) for t in texts]
    seen = [p.name for p in space]
    if dups := sorted({n for n in seen if seen.count(n) > 1}):
        raise ConfigError(f"--param {dups[0]} is given twice")
    for p, text in zip(space, texts):
        for value in (p.choices if p.kind == "choice" else (p.low, p.high)):
            value = int(value) if p.kind == "int" else value
            try:
                cfg = preset_config(base["preset"], **apply({k: v for k, v in base.items() if k != "preset"},
                                                            {p.name: value}))
                cfg.validate()
            except ConfigError as e:
                raise ConfigError(f"--param {text}: {p.name}={value} does not make a valid {base['preset']} "
                                  f"config: {e}") from None
    return space

