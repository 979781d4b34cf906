"""What every command group of ``mmsctl`` shares: adding a subcommand with its example, argument types,
printing JSON and notes.

>>> example("mmsctl list\\nmmsctl describe NAME")
'example:\\n  mmsctl list\\n  mmsctl describe NAME'
>>> floats("0.5,1,2")
[0.5, 1.0, 2.0]
>>> model_pair("cat=cat.mar")
('cat', 'cat.mar')
"""
import argparse
import json
import sys


def example(text):
    """The epilog of a subcommand: its example lines, indented."""
    return "example:\n  " + "\n  ".join(text.strip().splitlines())


def command(sub, name, help_text, example_text, **options):
    """Add subcommand ``name`` to ``sub`` with its help and its example epilog (kept as written)."""
    return sub.add_parser(name, help=help_text, epilog=example(example_text),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **options)


def floats(text):
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, got %r" % text)


def model_pair(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=FILE.mar, got %r" % text)
    return name, path


def print_json(value):
    print(json.dumps(value, indent=2))


def note(line):
    """A library's one-line note (why an --engine auto archive is MXNet-only), on stderr."""
    print("mmsctl: note: " + line, file=sys.stderr)
