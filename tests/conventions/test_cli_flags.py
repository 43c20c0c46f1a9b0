"""One flag vocabulary across every command (issue 13): ``python -m analysis``,
``lm-eval-ext`` and ``python -m lm_eval_ext.lab``.

Walks their parsers (built in-process by :func:`analysis.cli.build_parser`,
:func:`lm_eval_ext.cli.build_parser` and :func:`lm_eval_ext.lab.__main__.build_parser`)
and checks, for every subcommand:

- the primary (first, shown) name of every option is lm-eval-style snake_case
  (``--[a-z0-9_]+``; short flags like ``-t`` are allowed), and every other
  spelling is either snake_case too or one of the documented
  backward-compatible aliases (``analysis.conv.BACKWARD_COMPATIBLE_ALIASES``);
- an option name means one thing in every command, across the three
  programs: the same dest and the same kind (item type, list or single value,
  choices or not, flag or value); hidden old spellings kept for scripts
  (``LEGACY_ALIASES``) and removed flags (``RENAMED_FLAGS``) are no names of
  the vocabulary, and are checked to land on / name their new flag;
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

from analysis import cli, commands as conv
from lm_eval_ext import cli as ext_cli
from lm_eval_ext.conventions.flags import LegacyAlias

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
    """The parser's options, less --help, the hidden renamed-flag stubs and
    the hidden old spellings."""
    for a in parser._actions:
        if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                                                   conv.RenamedFlag, LegacyAlias)):
            yield a


def _type_name(t) -> str:
    """A value type by what it returns: a class by name, a parsing function
    by its return annotation (``_seed(value) -> int`` is an int)."""
    if isinstance(t, type):
        return t.__name__
    ret = getattr(t, "__annotations__", {}).get("return")
    if ret is not None:
        return ret if isinstance(ret, str) else getattr(ret, "__name__", repr(ret))
    return getattr(t, "__name__", repr(t))


def _kind(a: argparse.Action) -> tuple:
    """What an option takes: flag or value, item type, list or single, choices."""
    if a.nargs == 0:
        return ("flag", type(a).__name__)
    item = getattr(a, "item_type", a.type) or str
    many = isinstance(a, conv.ListAction) or a.nargs in ("+", "*") or isinstance(a.nargs, int) \
        or isinstance(a, argparse._AppendAction)
    return ("value", _type_name(item), "list" if many else "single", "choices" if a.choices else "free")


def _help_text(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    """The option's help as printed (defaults expanded), on one line."""
    return " ".join(parser._get_formatter()._expand_help(a).split())


def _shown(value) -> str:
    return conv.format_default(value)


def flag_violations(commands: dict[str, argparse.ArgumentParser], aliases: dict[str, str] | None = None,
                    list_action=None, not_lists=()) -> dict[str, list[str]]:
    """Every breach of the flag rules in ``commands`` (name -> parser), by
    rule.  ``aliases``: old spelling -> primary name allowed besides
    snake_case aliases; ``list_action``: the one Action class every list
    option must use (None: not checked), except the options in ``not_lists``."""
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
                    and not isinstance(a, list_action) and primary not in not_lists:
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
    assert flag_violations(commands, conv.BACKWARD_COMPATIBLE_ALIASES, conv.ListAction) == {}


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
        for renamed in conv.RENAMED_FLAGS.values():
            assert not live & set(renamed), (name, live & set(renamed))


def test_aliases_are_documented_and_land_on_their_flag(commands):
    for old, new in conv.BACKWARD_COMPATIBLE_ALIASES.items():
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
    got = conv.plain(text)
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
    got = flag_violations({"a": a, "b": b}, list_action=conv.ListAction)
    assert got["snake_case"] == ["a --n-boot", "b --out-dir (alias of --out)"]
    assert got["default"] == ["a --n-boot (default 5): 'resamples'"]
    assert [m.split(":")[0] for m in got["meaning"]] == ["--level"]
    assert len(got["rst"]) == 2 and got["list_style"] == ["a --holdout (nargs='+', _StoreAction)"]


# ---------------------------------------------------------------- lm-eval-ext and the lab

#: lm-eval's own KEY=VALUE,... arguments of passuntil (``--model_args``,
#: ``--gen_kwargs``): one string that lm_eval also takes space-split, not a list.
LM_EVAL_KEY_VALUE = ("--model_args", "--gen_kwargs")

#: lm-eval-ext commands that write something: each takes --output_path.
EXT_WRITERS = {"check", "passuntil", "finetune", "finetune-sweep"}


@pytest.fixture(scope="module")
def ext_parser():
    return ext_cli.build_parser()


@pytest.fixture(scope="module")
def ext_commands(ext_parser):
    cmds = _commands(ext_parser)
    assert set(cmds) == {"task-dir", "sandbox-info", "check", "passuntil", "finetune", "finetune-sweep", "lm-eval"}
    return cmds


@pytest.fixture(scope="module")
def lab():
    from lm_eval_ext.lab import __main__ as lab_main

    return lab_main


@pytest.fixture(scope="module")
def lab_parser(lab):
    return lab.build_parser()


@pytest.fixture(scope="module")
def every_command(commands, ext_commands, lab_parser):
    """Every command of the three programs, by a name that says the program."""
    return {**{f"analysis {n}": p for n, p in commands.items()},
            **{f"lm-eval-ext {n}": p for n, p in ext_commands.items()},
            "lab": lab_parser}


def _all_aliases(lab) -> dict[str, str]:
    return {**conv.BACKWARD_COMPATIBLE_ALIASES, **ext_cli.BACKWARD_COMPATIBLE_ALIASES,
            **lab.BACKWARD_COMPATIBLE_ALIASES}


def test_ext_and_lab_flags_follow_the_rules(ext_commands, lab_parser, lab):
    got = flag_violations({**ext_commands, "lab": lab_parser}, _all_aliases(lab), conv.ListAction,
                          not_lists=LM_EVAL_KEY_VALUE)
    assert got == {}


def test_one_meaning_per_name_across_every_command(every_command, lab):
    """analysis + lm-eval-ext + the lab together: every rule, the cross-command
    one ("one name, one meaning") included."""
    got = flag_violations(every_command, _all_aliases(lab), conv.ListAction, not_lists=LM_EVAL_KEY_VALUE)
    assert got == {}
    where: dict[str, set] = {}
    for name, p in every_command.items():
        for a in _options(p):
            for o in a.option_strings:
                if o in SHARED:
                    assert a.dest == SHARED[o], (name, o, a.dest)
                    where.setdefault(o, set()).add(name)
    assert {f"lm-eval-ext {c}" for c in EXT_WRITERS} | {"lab"} <= where["--output_path"]


def test_ext_and_lab_aliases_land_on_their_flag(ext_commands, lab_parser, lab):
    cmds = {**ext_commands, "lab": lab_parser}
    for aliases in (ext_cli.BACKWARD_COMPATIBLE_ALIASES, lab.BACKWARD_COMPATIBLE_ALIASES):
        for old, new in aliases.items():
            hits = [(n, a) for n, p in cmds.items() for a in _options(p) if old in a.option_strings]
            assert hits, f"{old} is documented as an alias but no command accepts it"
            for n, a in hits:
                assert a.option_strings[0] == new, (n, old, a.option_strings)
    # the hidden old spellings: documented, hidden from help, and set their new flag
    legacy = {**ext_cli.LEGACY_ALIASES, "lab": lab.LEGACY_ALIASES}
    for name, p in cmds.items():
        stubs = {o: a for a in p._actions if isinstance(a, LegacyAlias) for o in a.option_strings}
        assert stubs.keys() == legacy.get(name, {}).keys(), name
        for old, a in stubs.items():
            assert a.target.option_strings[0] == legacy[name][old] and a.dest == a.target.dest, (name, old)
            assert a.help is argparse.SUPPRESS and old not in p.format_usage().split(), (name, old)
            assert not [o for b in _options(p) for o in b.option_strings if o == old], (name, old)
    # the removed flags are hidden stubs naming their new flag
    assert {o for a in lab_parser._actions if isinstance(a, conv.RenamedFlag) for o in a.option_strings} \
        == set(lab.RENAMED_FLAGS)


@pytest.mark.parametrize("argv, want", [
    (["check", "s.jsonl", "--out", "r.jsonl"], {"output_path": "r.jsonl"}),
    (["finetune", "--base", "b", "--task", "cola", "--D", "100", "--out", "o", "--batch_size", "4"],
     {"train_size": 100, "output_path": "o", "train_batch_size": 4, "seed": 0}),
    (["finetune-sweep", "--checkpoint", "a=x", "--checkpoint", "b=y", "--task", "cola", "--D", "10", "100",
      "--seeds", "0", "1", "--out", "o", "--batch_size", "2"],
     {"checkpoint": ["a=x", "b=y"], "train_sizes": [10, 100], "seeds": [0, 1], "output_path": "o",
      "train_batch_size": 2}),
    (["passuntil", "-t", "a", "b,c", "--tasks", "d", "-o", "o", "--pass_at_k", "1", "10"],
     {"tasks": ["a", "b", "c", "d"], "output_path": "o", "pass_at_k": [1, 10]}),
])
def test_ext_old_spellings_still_parse(ext_parser, argv, want):
    args = vars(ext_parser.parse_args(argv))
    assert {k: args[k] for k in want} == want


def test_ext_lists_are_comma_separated(ext_parser):
    a = ext_parser.parse_args(["finetune-sweep", "--checkpoint", "a=x,b=y", "--checkpoint", "c=z", "--task",
                               "gsm8k", "--train_sizes", "10,100", "1000", "--seeds", "0,1", "--output_path", "o",
                               "--lora_target", "q_proj,v_proj"])
    assert a.checkpoint == ["a=x", "b=y", "c=z"] and a.train_sizes == [10, 100, 1000] and a.seeds == [0, 1]
    assert a.lora_target == ["q_proj", "v_proj"] and a.train_batch_size == 8
    a = ext_parser.parse_args(["finetune", "--base", "b", "--task", "mmlu", "--train_size", "7", "--output_path", "o"])
    assert (a.train_size, a.seed, a.lora_target) == (7, 0, None)
    a = ext_parser.parse_args(["passuntil", "--tasks", "x,y", "-o", "o", "--pass_at_k", "1,5"])
    assert a.tasks == ["x", "y"] and a.pass_at_k == [1, 5]
    assert ext_parser.parse_args(["passuntil", "-t", "x", "-o", "o"]).pass_at_k == [1]


@pytest.mark.parametrize("argv, err", [
    (["finetune", "--base", "b", "--task", "cola", "--output_path", "o"], "--train_size is required"),
    (["finetune", "--base", "b", "--task", "cola", "--output_path", "o", "--D", "1", "--train_size", "2"],
     "not allowed with argument --D"),
    (["finetune-sweep", "--task", "cola", "--output_path", "o"], "--train_sizes is required"),
    (["finetune-sweep", "--task", "cola", "--output_path", "o", "--train_sizes", "10,x"], "invalid int value: 'x'"),
    (["finetune", "--base", "b", "--task", "boolq", "--train_size", "2", "--output_path", "o"],
     "choose from gsm8k, mmlu, csqa, cola"),
])
def test_ext_errors_name_the_flags(ext_parser, argv, err, capsys):
    with pytest.raises(SystemExit) as exc:
        ext_parser.parse_args(argv)
    assert exc.value.code == 2
    assert err in capsys.readouterr().err


def test_lab_old_and_new_spellings(lab_parser, capsys):
    a = lab_parser.parse_args(["--out", "o", "--ft_D", "16,64", "256", "--batch_size", "8", "--n_seeds", "2",
                               "--tasks", "lab_add,lab_count", "--sizes", "8x1,12x1", "16x1", "--ft_seeds", "all"])
    assert (a.output_path, a.ft_train_sizes, a.train_batch_size, a.n_seeds) == ("o", [16, 64, 256], 8, 2)
    assert a.tasks == ["lab_add", "lab_count"] and a.sizes == ["8x1", "12x1", "16x1"] and a.ft_seeds == ["all"]
    assert "--batch_size is now --train_batch_size" in capsys.readouterr().err
    a = lab_parser.parse_args(["--output_path", "o"])
    assert (a.device, a.workers, a.n_seeds, a.tasks, a.train_batch_size) == ("cpu", 2, None, None, None)


def test_lab_seeds_says_n_seeds(lab_parser, capsys):
    with pytest.raises(SystemExit) as exc:
        lab_parser.parse_args(["--output_path", "o", "--seeds", "3"])
    assert exc.value.code == 2
    assert "use --n_seeds 3" in capsys.readouterr().err


def test_lab_knobs_show_their_defaults(lab_parser):
    """The knobs default to the config (--quick's or the full one's): the help says both."""
    text = " ".join(lab_parser.format_help().split())
    for shown in ("--n_seeds K seeds per size (0..K-1) (default: 3; with --quick: 2)", "(default: cpu)",
                  "(default: 2)", "(default: 64,256,1024,4096; with --quick: 64,256,1024)"):
        assert shown in text, shown


def test_ext_and_lab_help_is_plain_text(ext_parser, ext_commands, lab_parser):
    for p in [ext_parser, *ext_commands.values(), lab_parser]:
        text = p.format_help()
        assert not RST.search(text), (p.prog, RST.search(text).group(0))
    assert "lm-eval-ext or python -m lm_eval_ext" in ext_parser.format_help()
