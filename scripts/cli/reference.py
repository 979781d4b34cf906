"""The CLI reference (docs/cli.md), generated from the real ``mmsctl`` parser.

    python -m mmsctl.cli.reference --write docs/cli.md    # regenerate the page
    python -m mmsctl.cli.reference --check docs/cli.md    # exit 1 when the page is stale

The generator walks every subparser, however deep, so a subcommand added to any command group appears
without a change here. The parser is built with the ``MMSCTL_*`` variables unset and ``~`` for the home
folder, so the page does not depend on who generates it.

>>> cell("a|b\\nc")
'a\\\\|b c'
"""
import argparse
import contextlib
import os
import sys

HEADER = """# CLI reference

Generated from `mmsctl`'s own parser by `python -m mmsctl.cli.reference --write docs/cli.md`; do not edit by
hand (`tests/test_docs.py` fails when this page is stale). Every subcommand also prints this with `--help`.
"""


@contextlib.contextmanager
def neutral_environment():
    """Defaults that read the environment (state folder, URLs) as a fresh user sees them."""
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith("MMSCTL_") or key == "XDG_CACHE_HOME":
                del os.environ[key]
        os.environ["HOME"] = "~"
        os.environ["COLUMNS"] = "100"
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_parser():
    from . import build_parser as build
    with neutral_environment():
        return build()


def cell(text):
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split("\n")).replace("|", "\\|")


def subcommands(parser):
    """``(name, help, subparser)`` for each direct subcommand of ``parser``, in the order of ``--help``."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share one parser
                    seen.add(id(sub))
                    found.append((name, helps.get(name) or "", sub))
    return found


def walk(parser, path=("mmsctl",), help_text=""):
    """Every command as ``(path, help, parser)``: the root first, then depth first."""
    yield path, help_text, parser
    for name, text, sub in subcommands(parser):
        yield from walk(sub, path + (name,), text)


def options(parser):
    """The arguments of one parser except -h and its subcommand slot."""
    return [action for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]


def _value(action):
    if action.nargs == 0:
        return ""
    if action.choices:
        return "{%s}" % ",".join(str(choice) for choice in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if action.nargs in ("+", "*"):
        return "%s ..." % metavar
    if action.nargs == "?":
        return "[%s]" % metavar
    return str(metavar)


def _default(action):
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    if isinstance(action.default, (list, tuple)):
        return " ".join(str(item) for item in action.default)
    return str(action.default)


def _help(parser, action):
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)


def render_command(path, help_text, parser):
    lines = ["## `%s`" % " ".join(path), ""]
    if help_text or parser.description:
        lines += [(help_text or parser.description).strip(), ""]
    lines += ["```", parser.format_usage().strip(), "```", ""]
    rows = options(parser)
    if rows:
        lines += ["| option | value | default | description |", "|---|---|---|---|"]
        for action in rows:
            name = ", ".join("`%s`" % flag for flag in action.option_strings) or "`%s`" % action.dest
            if action.required and action.option_strings:
                name += " (required)"
            value = _value(action)
            default = _default(action)
            lines.append("| %s | %s | %s | %s |" % (
                name, "`%s`" % cell(value) if value else "", "`%s`" % cell(default) if default else "",
                cell(_help(parser, action))))
        lines.append("")
    subs = subcommands(parser)
    if subs:
        lines += ["Subcommands: %s." % ", ".join("[`%s`](#%s)" % (name, anchor(path + (name,)))
                                                 for name, _text, _sub in subs), ""]
    if parser.epilog:
        lines += ["```", parser.epilog.strip(), "```", ""]
    return lines


def anchor(path):
    """The id mkdocs gives the heading of ``path`` (its text, lower case, words joined by dashes)."""
    text = " ".join(path).lower()
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" if ch == " " else "" for ch in text)


def render(parser=None):
    parser = parser or build_parser()
    lines = HEADER.splitlines() + [""]
    with neutral_environment():
        for path, help_text, sub in walk(parser):
            lines += render_command(path, help_text, sub)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    args = argparse.ArgumentParser(prog="python -m mmsctl.cli.reference", description=__doc__.split("\n")[0])
    group = args.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="write the page to FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 when FILE differs from the generated page")
    args = args.parse_args(argv)
    page = render()
    if args.write:
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(page)
    elif args.check:
        try:
            with open(args.check, encoding="utf-8") as handle:
                current = handle.read()
        except OSError as err:
            print("mmsctl: error: cannot read %s: %s" % (args.check, err.strerror), file=sys.stderr)
            return 1
        if current != page:
            print("mmsctl: error: %s is stale: run python -m mmsctl.cli.reference --write %s"
                  % (args.check, args.check), file=sys.stderr)
            return 1
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
