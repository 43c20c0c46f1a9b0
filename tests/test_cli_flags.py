"""One flag vocabulary across every ``python -m analysis`` command (issue 13).

Walks the parser of ``python -m analysis`` (built in-process by
:func:`analysis.cli.build_parser`) and checks, for every subcommand:

- the primary (first, shown) name of every option is lm-eval-style snake_case
  (``--[a-z0-9_]+``; short flags like ``-t`` are allowed), and every other
  spelling is either snake_case too or one of the documented
  backward-compatible aliases (``analysis.cli.BACKWARD_COMPATIBLE_ALIASES``);
- an option name means one thing in every command: the same dest and the same
  kind (item type, list or single value, choices or not, flag or value);
- every option with a default shows it in its help;
- no help text (descriptions included) carries RST markup;
- lists are comma-separated everywhere (space-separated still accepted);
- ``python -m analysis --help`` describes the commands, not one of them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from analysis import cli

SNAKE = re.compile(r"--[a-z0-9]+(?:_[a-z0-9]+)*")
SHORT = re.compile(r"-[A-Za-z0-9]")
RST = re.compile(r"``|:[a-z]+(?::[a-z]+)?:`|`[^`]+`_|\S::\s*$|^\s*\.\. ", re.M)

# Names several commands share, each with its one meaning (dest, kind).
SHARED = {
    "--output_path": "output_path",  # the output directory (alias --out)
    "--manifest": "manifest",        # CSV/YAML keyed by model
    "--x": "x",                      # the scale / size variable
    "--task": "task",                # exactly one task
    "--tasks": "tasks",              # a comma-separated list of tasks
    "--metric": "metric",            # metric[,filter]
    "--seed": "seed",                # the random seed
    "--n_boot": "n_boot",            # bootstrap resamples / refits
}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser):
    """The parser's options, less --help and the hidden renamed-flag stubs."""
    for a in parser._actions:
        if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                                                   cli.RenamedFlag)):
            yield a


def _kind(a: argparse.Action) -> tuple:
    """What an option takes: flag or value, item type, list or single, choices."""
    if a.nargs == 0:
        return ("flag", type(a).__name__)
    item = getattr(a, "item_type", a.type) or str
    many = isinstance(a, cli.ListAction) or a.nargs in ("+", "*") or isinstance(a.nargs, int) \
        or isinstance(a, argparse._AppendAction)
    return ("value", getattr(item, "__name__", repr(item)), "list" if many else "single",
            "choices" if a.choices else "free")


def _help_text(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    """The option's help as printed (defaults expanded), on one line."""
    return " ".join(parser._get_formatter()._expand_help(a).split())


def _shown(value) -> str:
    return cli.format_default(value)


def flag_violations(commands: dict[str, argparse.ArgumentParser], aliases: dict[str, str] | None = None,
                    list_action=None) -> dict[str, list[str]]:
    """Every breach of the flag rules in ``commands`` (name -> parser), by
    rule.  ``aliases``: old spelling -> primary name allowed besides
    snake_case aliases; ``list_action``: the one Action class every list
    option must use (None: not checked)."""
    aliases = aliases or {}
    out = {"snake_case": [], "meaning": [], "default": [], "rst": [], "list_style": []}
    seen: dict[str, dict[tuple, list[str]]] = {}
    for name, p in commands.items():
        for text, what in ((p.description, "description"), (p.epilog, "epilog")):
            if text and RST.search(text):
                out["rst"].append(f"{name} {what}: {RST.search(text).group(0)!r}")
        for a in _options(p):
            longs = [o for o in a.option_strings if o.startswith("--")]
            shorts = [o for o in a.option_strings if not o.startswith("--")]
            primary = longs[0] if longs else a.option_strings[0]
            if a.option_strings[0] not in (primary, *shorts) or not SNAKE.fullmatch(primary):
                out["snake_case"].append(f"{name} {primary}")
            for o in shorts:
                if not SHORT.fullmatch(o):
                    out["snake_case"].append(f"{name} {o}")
            for o in longs[1:]:
                if not SNAKE.fullmatch(o) and aliases.get(o) != primary:
                    out["snake_case"].append(f"{name} {o} (alias of {primary})")
            for o in a.option_strings:
                seen.setdefault(o, {}).setdefault((a.dest, _kind(a)), []).append(name)
            if a.help and a.help is not argparse.SUPPRESS:
                text = _help_text(p, a)
                if RST.search(a.help):
                    out["rst"].append(f"{name} {primary}: {RST.search(a.help).group(0)!r}")
                if a.nargs != 0 and a.default not in (None, argparse.SUPPRESS) \
                        and f"default: {_shown(a.default)}" not in text \
                        and not re.search(rf"default:? {re.escape(str(a.default))}\b", text):
                    out["default"].append(f"{name} {primary} (default {a.default!r}): {text!r}")
            elif a.nargs != 0 and a.default not in (None, argparse.SUPPRESS):
                out["default"].append(f"{name} {primary} (default {a.default!r}): no help")
            if list_action is not None and _kind(a)[:1] == ("value",) and _kind(a)[2] == "list" \
                    and not isinstance(a, list_action):
                out["list_style"].append(f"{name} {primary} (nargs={a.nargs!r}, {type(a).__name__})")
    for o, meanings in sorted(seen.items()):
        if len(meanings) > 1:
            out["meaning"].append(o + ": " + "; ".join(f"{', '.join(cmds)}: dest {d}, {k}"
                                                      for (d, k), cmds in meanings.items()))
    return {k: v for k, v in out.items() if v}


@pytest.fixture(scope="module")
def parser():
    return cli.build_parser()


@pytest.fixture(scope="module")
def commands(parser):
    cmds = _commands(parser)
    assert set(cmds) == {"scaling", "backtest", "emergence", "seeds"}
    return cmds


def test_analysis_flags_follow_the_rules(commands):
    assert flag_violations(commands, cli.BACKWARD_COMPATIBLE_ALIASES, cli.ListAction) == {}


def test_shared_names_mean_one_thing(commands):
    where: dict[str, set] = {}
    for name, p in commands.items():
        for a in _options(p):
            for o in a.option_strings:
                if o in SHARED:
                    assert a.dest == SHARED[o], (name, o, a.dest)
                    where.setdefault(o, set()).add(name)
    # the output directory is --output_path in every command
    assert where["--output_path"] == set(commands)
    # every command that bootstraps takes the random seed as --seed
    assert where["--n_boot"] <= where["--seed"]
    assert where["--tasks"] == {"scaling", "backtest"} and where["--task"] == {"emergence", "seeds"}
    # no command still spells a removed flag
    for name, p in commands.items():
        live = {o for a in _options(p) for o in a.option_strings}
        for renamed in cli.RENAMED_FLAGS.values():
            assert not live & set(renamed), (name, live & set(renamed))


def test_aliases_are_documented_and_land_on_their_flag(commands):
    for old, new in cli.BACKWARD_COMPATIBLE_ALIASES.items():
        hits = [(n, a) for n, p in commands.items() for a in _options(p) if old in a.option_strings]
        assert hits, f"{old} is documented as an alias but no command accepts it"
        for n, a in hits:
            assert a.option_strings[0] == new, (n, old, a.option_strings)


@pytest.mark.parametrize("argv, want", [
    (["scaling", "r", "--out", "o", "--n-boot", "5", "--k", "1", "10"],
     {"output_path": "o", "n_boot": 5, "pass_at_k": [1, 10]}),
    (["emergence", "r", "--out", "o", "--n-boot", "5", "--loss-task", "lt", "--loss-metric", "lm",
      "--backtest-before", "2.5"],
     {"output_path": "o", "n_boot": 5, "loss_task": "lt", "loss_metric": "lm", "backtest_before": 2.5}),
    (["seeds", "r", "--out", "o", "--n-boot", "5", "--random_state", "3"],
     {"output_path": "o", "n_boot": 5, "seed": 3}),
    (["backtest", "r", "--out", "o", "--task", "a"], {"output_path": "o", "tasks": ["a"]}),
    (["scaling", "r", "--task", "a"], {"tasks": ["a"]}),  # --task: argparse's unique prefix of --tasks
])
def test_old_spellings_still_parse(parser, argv, want):
    args = vars(parser.parse_args(argv))
    assert {k: args[k] for k in want} == want


@pytest.mark.parametrize("argv, new", [(["scaling", "r", "--level", "instance"], "--fit_level instance"),
                                       (["seeds", "r", "--level", "0.1"], "--alpha 0.1")])
def test_renamed_level_says_the_new_flag(parser, argv, new, capsys):
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    assert f"use {new}" in capsys.readouterr().err


def test_lists_are_comma_separated_and_accept_spaces(parser):
    a = parser.parse_args(["scaling", "r", "--predict", "1e9,2e9", "--holdout", "m1,1e6", "3e6",
                           "--pass_at_k", "1,5", "--tasks", "t1,t2"])
    assert a.predict == [1e9, 2e9] and a.holdout == ["m1", "1e6", "3e6"] and a.pass_at_k == [1, 5]
    assert a.tasks == ["t1", "t2"]
    a = parser.parse_args(["backtest", "r", "--tasks", "t1", "t2,t3"])
    assert a.tasks == ["t1", "t2", "t3"]
    a = parser.parse_args(["scaling", "r"])
    assert a.predict == [] and a.holdout == [] and a.pass_at_k == [1, 10, 100] and a.tasks is None


def test_list_items_are_typed(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["scaling", "r", "--predict", "1e9,big"])
    assert "invalid float value: 'big'" in capsys.readouterr().err


def test_list_defaults_are_shown_as_typed(commands):
    help_text = " ".join(commands["scaling"].format_help().split())
    assert "(default: 1,10,100)" in help_text


def test_plain_strips_rst():
    text = ("Writes ``DIR/x.json``::\n\n    {}\n\nSee :func:`analysis.ingest.load` and "
            ":mod:`~analysis.ingest.tables`, ``--x N``.")
    got = cli.plain(text)
    assert got == "Writes DIR/x.json:\n\n    {}\n\nSee analysis.ingest.load and analysis.ingest.tables, --x N."
    assert not RST.search(got)


def test_full_help_has_no_rst(parser, commands):
    for p in [parser, *commands.values()]:
        text = p.format_help()
        assert not RST.search(text), (p.prog, RST.search(text).group(0))


def test_top_level_help_describes_the_commands():
    proc = subprocess.run([sys.executable, "-m", "analysis", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    usage, _, rest = out.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert usage.startswith("usage: python -m analysis")
    assert "scaling TABLE_OR_DIR" not in out and "exp(-c N^-alpha) to per-instance" not in out
    assert description.strip() and "PassUntil" in description
    for cmd in ("scaling", "backtest", "emergence", "seeds"):
        assert cmd in out
    assert "--output_path" in out


def test_the_checker_finds_each_kind_of_breach():
    """The walk is not vacuous: a parser breaking every rule is caught on each."""
    a = argparse.ArgumentParser(description="see :func:`x.y`")
    a.add_argument("--n-boot", type=int, default=5, help="resamples")
    a.add_argument("--level", type=float, default=0.05, help="significance (default: %(default)s)")
    a.add_argument("--holdout", nargs="+", help="space-separated list")
    b = argparse.ArgumentParser()
    b.add_argument("--level", choices=["task", "instance"], help="the fit")
    b.add_argument("--out", "--out-dir", dest="out", help="``DIR``")
    got = flag_violations({"a": a, "b": b}, list_action=cli.ListAction)
    assert got["snake_case"] == ["a --n-boot", "b --out-dir (alias of --out)"]
    assert got["default"] == ["a --n-boot (default 5): 'resamples'"]
    assert [m.split(":")[0] for m in got["meaning"]] == ["--level"]
    assert len(got["rst"]) == 2 and got["list_style"] == ["a --holdout (nargs='+', _StoreAction)"]
