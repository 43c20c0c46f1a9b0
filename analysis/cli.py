"""``python -m analysis scaling|emergence|seeds|backtest ...``

Each analysis keeps its command beside its fit (``analysis/<method>/cli.py``);
this module only assembles them, and holds what every command shares: the
flag conventions (lm-eval's), the help formatter, and the plain-text
descriptions made from the modules' docstrings.

Flag conventions, as in lm-eval's own CLI:

- snake_case names (``--n_boot``, ``--output_path``, ``--loss_task``); the
  kebab-case spellings of earlier versions are kept as aliases where listed in
  :data:`BACKWARD_COMPATIBLE_ALIASES`;
- ``--output_path`` is the output directory of every command (``--out`` is an
  alias), ``--seed`` the random seed, ``--tasks`` a list of tasks and
  ``--task`` exactly one task;
- lists are comma-separated (``--holdout 1e9,3e9``, like lm-eval's
  ``--tasks a,b``); space-separated values are accepted too;
- every help shows its default.
"""

from __future__ import annotations

import argparse
import re

#: old spelling -> the flag it now spells, kept so that existing scripts run;
#: these are the only option strings of ``python -m analysis`` that are not
#: the lm-eval style snake_case (or that duplicate a snake_case name).
BACKWARD_COMPATIBLE_ALIASES = {
    "--out": "--output_path",
    "--n-boot": "--n_boot",
    "--loss-task": "--loss_task",
    "--loss-metric": "--loss_metric",
    "--backtest-before": "--backtest_before",
    "--random_state": "--seed",
    "--k": "--pass_at_k",
}

#: flags that were removed because their name meant different things in
#: different commands: using one is an error that names the new flag.
RENAMED_FLAGS = {
    "scaling": {"--level": "--fit_level"},
    "seeds": {"--level": "--alpha"},
}

DESCRIPTION = """\
Fits and forecasts over lm-eval result directories and tidy tables (CSV,
parquet, JSONL): the PassUntil task scaling law and its calibrated forecasts
(scaling), the forecast's own track record on your ladder of models
(backtest), the finetuning emergence law (emergence), and distributions of a
metric across training seeds (seeds). Each command writes JSON and PNG files
into --output_path.
"""

EPILOG = """\
Flags follow lm-eval's conventions in every command: snake_case names
(--n_boot, --output_path), --output_path for the output directory, --seed for
the random seed, --tasks for a list of tasks and --task for one task, and
comma-separated lists (--holdout 1e9,3e9). Earlier spellings (--out, --n-boot,
--loss-task, --loss-metric, --backtest-before, --random_state, --k) are still
accepted.
"""

_ROLE = re.compile(r":(?:func|mod|class|meth|attr|data|obj|exc|ref|py:\w+):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    """RST markup of a docstring as plain text for ``--help``: ``x`` -> x,
    :func:`a.b` (and :mod:, :class:, ...) -> a.b, and a literal-block
    marker "text::" -> "text:"."""
    if text is None:
        return None
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = re.sub(r"(\S)::(\s*)$", r"\1:\2", text, flags=re.M)  # "Writes X::" -> "Writes X:"
    text = re.sub(r"^\s*::\s*$\n?", "", text, flags=re.M)      # a lone "::" line
    return text


def format_default(value) -> str:
    """A default as the user would type it: lists comma-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's help ends with its
    default, ``(default: X)``, unless the help already says it (lists shown
    comma-separated, as they are typed)."""

    def _get_help_string(self, action):
        help = action.help or ""
        default = action.default
        if ("%(default)" in help or "(default:" in help or default is None or default is argparse.SUPPRESS
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                       argparse._HelpAction, argparse._VersionAction))):
            return help
        shown = format_default(default).replace("%", "%%")
        return f"{help} (default: {shown})" if help else f"(default: {shown})"

    def _format_args(self, action, default_metavar):
        if isinstance(action, ListAction):  # typed comma-separated: X1,X2,...
            m = self._metavar_formatter(action, default_metavar)(1)[0]
            return f"{m}1,{m}2,..."
        return super()._format_args(action, default_metavar)


class ListAction(argparse.Action):
    """A list option: comma-separated (``--holdout 1e9,3e9``), space-separated
    values accepted too (``--holdout 1e9 3e9``); each item converted by
    ``item_type``.  The option given again replaces the list."""

    def __init__(self, option_strings, dest, item_type=str, **kwargs):
        self.item_type = item_type
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        items = []
        for value in [values] if isinstance(values, str) else values:
            for part in str(value).split(","):
                part = part.strip()
                if not part:
                    continue
                try:
                    items.append(self.item_type(part))
                except (TypeError, ValueError):
                    name = getattr(self.item_type, "__name__", repr(self.item_type))
                    raise argparse.ArgumentError(self, f"invalid {name} value: {part!r}") from None
        setattr(namespace, self.dest, items)


def add_list_argument(parser, *names, item_type=str, default=None, metavar=None, **kwargs):
    """Add a comma-separated list option (see :class:`ListAction`)."""
    if metavar is None:
        metavar = names[0].lstrip("-").upper()
    return parser.add_argument(*names, nargs="+", action=ListAction, item_type=item_type,
                               default=list(default) if isinstance(default, (list, tuple)) else default,
                               metavar=metavar, **kwargs)


class RenamedFlag(argparse.Action):
    """A removed flag (hidden from help): using it is an error naming the new
    one.  Kept for flags whose old name meant different things in different
    commands, so no alias could stand for both."""

    def __init__(self, option_strings, dest, new=None, **kwargs):
        self.new = new
        kwargs.update(nargs="?", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed to {self.new}"
                     + (f": use {self.new} {values}" if values is not None else ""))


def add_command(subparsers, name: str, *, help: str, description: str | None):
    """A subcommand parser with the shared conventions: the description (a
    module docstring) as plain text, defaults in every help, and the
    removed flags of :data:`RENAMED_FLAGS` as errors that name the new ones."""
    parser = subparsers.add_parser(name, help=help, description=plain(description), formatter_class=HelpFormatter)
    for old, new in RENAMED_FLAGS.get(name, {}).items():
        parser.add_argument(old, action=RenamedFlag, new=new)
    return parser


def add_output_path(parser, default: str, help: str):
    """``--output_path`` (alias ``--out``): the command's output directory."""
    return parser.add_argument("--output_path", "--out", dest="output_path", default=default, metavar="DIR",
                               help=help)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m analysis`` with every subcommand."""
    from .emergence import cli as emergence_cli
    from .forecast import cli as forecast_cli
    from .seeds import cli as seeds_cli
    from .tasklaw import cli as tasklaw_cli

    parser = argparse.ArgumentParser(prog="python -m analysis", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                                title="commands (python -m analysis COMMAND --help)")
    # each module's add_parser() adds a parser whose default ``fn`` (args -> exit code) runs it
    for module in (tasklaw_cli, forecast_cli, emergence_cli, seeds_cli):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)
