"""``mmsctl``: one command line over the library, one module per command group.

Each module of this package (archive, serve, manage, predict, bench, ecs, k8s, soak; ``top`` lives with the
metrics in :mod:`mmsctl.metrics.cli`) has module-level ``cmd_*`` functions that parse options, call library
code and print, and an ``add_commands(sub)`` that adds its subcommands. Library errors are typed
(:class:`mmsctl.errors.MmsctlError`) and become one line on stderr and a non-zero exit here, nowhere else.
"""
import argparse
import sys

from .. import __version__
from ..errors import MmsctlError
from ..metrics import cli as metrics_cli
from . import archive, bench, ecs, k8s, manage, predict, serve, soak
from .common import example

DESCRIPTION = "Build, serve and deploy MXNet Model Server (.mar) archives."

#: Every command group, in the order ``mmsctl --help`` lists them.
COMMAND_GROUPS = (archive.add_commands, serve.add_commands, manage.add_commands, predict.add_commands,
                  bench.add_commands, ecs.add_commands, k8s.add_commands, soak.add_commands, metrics_cli.add_top_command)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mmsctl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=example("mmsctl archive efficientnet-lite0 --export-path model_store\n"
                        "mmsctl serve --profile cpu-latency --model-store model_store "
                        "--models efficientnet-lite0=efficientnet-lite0.mar\n"
                        "mmsctl scale efficientnet-lite0 --min-worker 1\n"
                        "mmsctl predict --model efficientnet-lite0 chelsea.png"))
    parser.add_argument("--version", action="version", version="mmsctl " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except MmsctlError as err:
        print("mmsctl: error: %s" % err, file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        print("mmsctl: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0

