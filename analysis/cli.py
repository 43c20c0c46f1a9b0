"""``python -m analysis scaling|emergence|seeds|backtest ...``

Each analysis keeps its command beside its fit (``analysis/<method>/cli.py``);
this module only assembles them.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    from .emergence import cli as emergence_cli
    from .forecast import cli as forecast_cli
    from .seeds import cli as seeds_cli
    from .tasklaw import cli as tasklaw_cli

    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Fits and forecasts over lm-eval result directories and tidy tables.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    # each module's add_parser() adds a parser whose default ``fn`` (args -> exit code) runs it
    for module in (tasklaw_cli, forecast_cli, emergence_cli, seeds_cli):
        module.add_parser(sub)
    args = parser.parse_args(argv)
    return args.fn(args)
