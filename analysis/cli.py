"""``python -m analysis scaling|emergence|seeds|backtest ...``

Each analysis keeps its command beside its fit (``analysis/<method>/cli.py``);
this module only assembles them.  What every command shares (the flag
conventions, lm-eval's; the help formatter; the plain-text descriptions made
from the modules' docstrings) is in :mod:`analysis.commands`, whose argparse
pieces are lm_eval_ext.conventions.flags', shared with lm-eval-ext and the lab.

Flag conventions, as in lm-eval's own CLI:

- snake_case names (``--n_boot``, ``--output_path``, ``--loss_task``); the
  kebab-case spellings of earlier versions are kept as aliases where listed in
  :data:`analysis.commands.BACKWARD_COMPATIBLE_ALIASES`;
- ``--output_path`` is the output directory of every command (``--out`` is an
  alias), ``--seed`` the random seed, ``--tasks`` a list of tasks and
  ``--task`` exactly one task;
- lists are comma-separated (``--holdout 1e9,3e9``, like lm-eval's
  ``--tasks a,b``); space-separated values are accepted too;
- every help shows its default.
"""

from __future__ import annotations

import argparse

from .commands import HelpFormatter

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
