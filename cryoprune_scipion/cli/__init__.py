"""`cryoprune`: each engine step as a command on plain files (MRC, CSV).

The protocols run these commands as Scipion jobs; the same commands serve a
RELION External job or a script. Each capability adds its commands in its own
module of this package.
"""
import importlib
import logging
import signal
import sys
import threading

from .arguments import CommandParser

COMMAND_MODULES = ["demo", "picking", "extraction", "pruning", "classification"]
EXIT_INPUT_ERROR = 2


class Interrupted(BaseException):
    """SIGTERM, raised like SIGINT's KeyboardInterrupt so that clean-up runs."""


def _raise_interrupted(signum, frame):
    raise Interrupted()


def build_parser():
    parser = CommandParser(
        prog="cryoprune",
        description="Deep-learning picking, pruning and 2D classification for cryo-EM.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module("%s.%s" % (__name__, name))
        module.add_commands(commands)
    return parser


def main(argv=None):
    """Run one command; returns the exit code: 0 done, 2 bad input (one
    message, nothing written), 130 or 143 interrupted (SIGINT, SIGTERM)."""
    from ..engine.device import resolve_gpus
    from ..engine.io import InputError
    from ..engine.workers import LOG_DATE_FORMAT, LOG_FORMAT
    from .outputs import discard_incomplete, forget_runs
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT,
                        stream=sys.stdout)
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # only the main thread may handle signals
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        if hasattr(args, "device"):
            args.gpu_ids = resolve_gpus(args.device, args.cpu_fallback)
        args.run(args)
    except InputError as error:
        discard_incomplete()
        print("cryoprune %s: error: %s" % (args.command, " ".join(str(error).split())),
              file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (KeyboardInterrupt, Interrupted) as interruption:
        discard_incomplete()
        print("cryoprune %s: interrupted; incomplete results removed" % args.command,
              file=sys.stderr)
        return 130 if isinstance(interruption, KeyboardInterrupt) else 143
    except BaseException:
        discard_incomplete()
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    forget_runs()
    return 0
