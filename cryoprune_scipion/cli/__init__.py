"""`cryoprune`: each engine step as a command on plain files (MRC, CSV).

The protocols run these commands as Scipion jobs; the same commands serve a
RELION External job or a script. Each capability adds its commands in its own
module of this package.
"""
import argparse
import importlib
import logging
import sys

COMMAND_MODULES = ["demo", "picking", "pruning", "classification"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cryoprune",
        description="Deep-learning picking, pruning and 2D classification for cryo-EM.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module("%s.%s" % (__name__, name))
        module.add_commands(commands)
    return parser


def main(argv=None):
    from ..engine.io import InputError
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stdout)
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print("cryoprune %s: error: %s" % (args.command, error), file=sys.stderr)
        return 2
    return 0
