"""What every ``python -m analysis`` command shares: the flag conventions
(lm-eval's, from :mod:`lm_eval_ext.conventions.flags`, re-exported here), the
spellings kept from earlier versions, the flags removed because one name meant
different things, and :func:`add_command`.  The commands
(``analysis/<method>/cli.py``) build their parsers from this module;
:mod:`analysis.cli` assembles them.
"""

from __future__ import annotations

# The argparse pieces of the conventions live in lm_eval_ext.conventions (a
# leaf both packages build on; lm-eval-ext's own commands use them too).
from lm_eval_ext.conventions.flags import (  # noqa: F401  (re-exported: analysis.commands.plain, ...)
    HelpFormatter,
    ListAction,
    RenamedFlag,
    add_command as _add_command,
    add_list_argument,
    add_output_path,
    format_default,
    plain,
)

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


def add_command(subparsers, name: str, *, help: str, description: str | None):
    """:func:`lm_eval_ext.conventions.flags.add_command` with this package's
    :data:`RENAMED_FLAGS`."""
    return _add_command(subparsers, name, help=help, description=description, renamed=RENAMED_FLAGS.get(name))
