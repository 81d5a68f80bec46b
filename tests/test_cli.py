"""One CLI vocabulary: every command and option has help, choice-valued options have argparse
choices, a renamed spelling is refused in one line naming the new one, and the shared options
mean the same everywhere."""
from __future__ import annotations

import argparse

import pytest

from gankit.cli import build_parser, main
from gankit.config import field_choices


def walk(parser: argparse.ArgumentParser, path=("gankit",)):
    """(command path, parser) for the parser and every subparser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


def options(parser):
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def test_every_command_and_option_has_help():
    for path, parser in walk(build_parser()):
        assert parser.description or len(path) == 1, f"{' '.join(path)}: no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                assert set(helps) == set(action.choices) and all(helps.values()), f"{' '.join(path)}: {helps}"
        for a in options(parser) + [a for a in parser._actions if not a.option_strings
                                    and not isinstance(a, argparse._SubParsersAction)]:
            assert a.help, f"{' '.join(path)} {a.option_strings or a.dest}: no help"


def test_choice_valued_options_have_choices():
    flags = {f"--{name.replace('_', '-')}": set(values) for name, values in field_choices().items()}
    train = dict(walk(build_parser()))[("gankit", "train")]
    got = {s: a.choices for a in options(train) for s in a.option_strings}
    for flag, values in flags.items():
        assert got[flag] is not None and set(got[flag]) == values, flag
    for path, parser in walk(build_parser()):
        for a in options(parser):
            # An option whose help lists alternatives ("a | b") takes them as choices.
            assert " | " not in (a.help or "") or a.choices, f"{' '.join(path)} {a.option_strings}"


def test_one_name_one_meaning():
    seen: dict[str, set[str]] = {}
    for path, parser in walk(build_parser()):
        for a in options(parser):
            for s in a.option_strings:
                seen.setdefault(s, set()).add(" ".join(path[1:]))
                if s == "--device":  # (train's flags default to None: only those given override the preset)
                    assert a.default == "auto" or "(the default preset: auto)" in a.help, f"{' '.join(path)}"
    assert "--output" not in seen and "--study" not in seen
    assert seen["--steps"] <= {"train", "tune", "grid"}, seen["--steps"]  # training steps, nothing else
    assert seen["--out-dir"] == {"train", "tune", "grid"}  # where new run folders are numbered
    assert {"sample", "explore sweep", "eval", "compare", "report"} <= seen["--out"]
    assert {"sample", "explore nudge", "eval", "compare", "app"} <= seen["--device"]
    # One seed convention: --seed (or --seeds) is the seed of the vectors a command draws; no other seed flag.
    seeds = {s for s in seen if "seed" in s}
    assert seeds == {"--seed", "--seeds"}, seeds
    for path, parser in walk(build_parser()):
        for a in options(parser):
            if "--seed" in a.option_strings and path[1] in ("sample", "explore", "invert"):
                assert "seed of the" in a.help, f"{' '.join(path)}: {a.help}"


@pytest.mark.parametrize("argv, hint", [
    (["explore", "sweep", "RUN", "--dims", "1", "--steps", "5"], "--steps was renamed --frames"),
    (["explore", "interpolate", "RUN", "--from", "1", "--steps", "5"], "--steps was renamed --frames"),
    (["report", "RUN", "--output", "x.html"], "--output was renamed --out"),
    (["tune", "--study", "s"], "--study was renamed --name"),
    (["grid", "--presets", "default", "--grid", "d_lr=1e-4,2e-4"], "--grid was renamed --vary"),
    (["sweep", "--presets", "default"], "gankit sweep was renamed gankit grid"),
    (["explore", "sweep", "RUN", "--dims", "1", "--base-seeds", "5"], "--base-seeds was renamed --seeds"),
    (["explore", "directions", "RUN", "--base-seed", "5"], "--base-seed was renamed --seed"),
])
def test_renamed_spellings_are_refused_with_the_new_name(argv, hint, capsys):
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and hint in err and len(err.splitlines()) == 1, err


def test_train_help_shows_what_the_default_preset_runs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, value in (("--batch-size", "64"), ("--g-lr", "0.0004"), ("--ema", "0.999"), ("--precision", "auto")):
        assert f"(the default preset: {value})" in text.split(flag, 2)[-1][:400], flag


def test_help_shows_no_default_a_user_cannot_type():
    """No option's help offers "None" (an unset value no flag can give); an unset field says what it falls back to."""
    for path, parser in walk(build_parser()):
        for a in options(parser):
            assert "None" not in (a.help or ""), f"{' '.join(path)} {a.option_strings[0]}: {a.help}"


def test_flags_required_in_some_cases_say_when():
    for path, parser in walk(build_parser()):
        for a in options(parser):
            if a.dest == "dims":
                assert "required unless --direction" in a.help, " ".join(path)
            if a.dest == "cls" and path[-1] != "sample":
                assert "required for a conditional run" in a.help, " ".join(path)


def test_one_name_for_an_optimisations_step_count_in_the_cli_and_the_api():
    import inspect
    from gankit import GANPipeline
    invert = dict(walk(build_parser()))[("gankit", "invert")]
    assert "--iterations" in {s for a in options(invert) for s in a.option_strings}
    assert "iterations" in inspect.signature(GANPipeline.invert).parameters


def test_presets_show_the_budget_each_sets(capsys):
    assert main(["presets"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " 30 min " in rows["best"] and " 15 epochs " in rows["default"]
    # and the parameter counts of G and D, as models.txt gives them
    from gankit.config import preset_config
    from gankit.nets import build_models, count_params
    G, D = build_models(preset_config("fastgan64").resolved())
    assert f" {count_params(G) / 1e6:.2f}M/{count_params(D) / 1e6:.2f}M " in rows["fastgan64"]
