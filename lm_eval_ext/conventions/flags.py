"""The command-line conventions every command of this project shares:
``lm-eval-ext``, ``python -m lm_eval_ext.lab`` and ``python -m analysis``.

Flags follow lm-eval's own CLI: snake_case names, ``--output_path`` for the
output (``--out`` is an alias), ``--seed`` for one random seed, ``--tasks``
for a list of tasks and ``--task`` for one, comma-separated lists (space
separated accepted too), one meaning per flag name across all commands, every
help showing its default and plain-text help (no RST markup).

This module holds the argparse pieces for that: :class:`HelpFormatter`,
:func:`plain`, :class:`ListAction` / :func:`add_list_argument`,
:class:`RenamedFlag`, :class:`LegacyAlias` and :func:`add_output_path`.  It
lives in ``lm_eval_ext`` (which ``analysis`` already depends on) so that the
core package never imports ``analysis``.
"""

from __future__ import annotations

import argparse
import re

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
    ``item_type``.  The option given again replaces the list, or, with
    ``extend=True``, adds to it (``--checkpoint a=x --checkpoint b=y``)."""

    def __init__(self, option_strings, dest, item_type=str, extend=False, **kwargs):
        self.item_type = item_type
        self.extend = extend
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
                except (TypeError, ValueError, argparse.ArgumentTypeError):
                    name = getattr(self.item_type, "__name__", repr(self.item_type))
                    raise argparse.ArgumentError(self, f"invalid {name} value: {part!r}") from None
        current = getattr(namespace, self.dest, None)
        if self.extend and current is not None and current is not self.default:
            items = [*current, *items]
        setattr(namespace, self.dest, items)


def add_list_argument(parser, *names, item_type=str, default=None, metavar=None, **kwargs):
    """Add a comma-separated list option (see :class:`ListAction`)."""
    if metavar is None:
        metavar = names[0].lstrip("-").upper()
    return parser.add_argument(*names, nargs="+", action=ListAction, item_type=item_type,
                               default=list(default) if isinstance(default, (list, tuple)) else default,
                               metavar=metavar, **kwargs)


def add_command(subparsers, name: str, *, help: str, description: str | None = None,
                renamed: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with the shared conventions: the description (a
    docstring, shown as plain text; the one-line help where there is none),
    defaults in every help, and the removed flags of ``renamed`` (old -> new)
    as errors that name the new ones."""
    parser = subparsers.add_parser(name, help=help, description=plain(description) if description else help,
                                   formatter_class=HelpFormatter)
    for old, new in (renamed or {}).items():
        parser.add_argument(old, action=RenamedFlag, new=new)
    return parser


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


class LegacyAlias(argparse.Action):
    """An old spelling (hidden from help) that still sets its new flag, for a
    name that is no longer a flag of the shared vocabulary because it stood for
    a different setting in another command (``finetune --D`` one size,
    ``finetune-sweep --D`` a list of sizes).  Parses its values as the new flag
    does, and says the new name on stderr.  Add it with :func:`add_legacy_alias`."""

    def __init__(self, option_strings, dest, target=None, **kwargs):
        self.target = target
        kwargs.update(nargs=target.nargs, type=target.type, choices=target.choices, metavar=target.metavar,
                      help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        super().__init__(option_strings, target.dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        new = self.target.option_strings[0]
        print(f"note: {option_string} is now {new} (the old spelling still works)", file=sys.stderr)
        self.target(parser, namespace, values, new)


def add_legacy_alias(parser, old: str, target: argparse.Action) -> argparse.Action:
    """Accept ``old`` (hidden) for ``target``.  A required ``target`` stays
    required: both go into a required group, in which at most one may be given."""
    if target.required:
        group = parser.add_mutually_exclusive_group(required=True)
        target.required = False
        group._group_actions.append(target)
        return group.add_argument(old, action=LegacyAlias, target=target)
    return parser.add_argument(old, action=LegacyAlias, target=target)


def add_output_path(parser, default: str | None, help: str, *, metavar: str = "DIR", **kwargs):
    """``--output_path`` (alias ``--out``): where the command writes."""
    return parser.add_argument("--output_path", "--out", dest="output_path", default=default, metavar=metavar,
                               help=help, **kwargs)
