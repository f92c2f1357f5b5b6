"""Argument types shared by the `cryoprune` commands: a bad value is an
exit-code-2 error that names the option and what it takes."""
import argparse


class CommandParser(argparse.ArgumentParser):
    """Reports a usage error as one `cryoprune COMMAND: error:` line."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def _number(kind, accepts, description):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number" % text) from None
        if not accepts(value):
            raise argparse.ArgumentTypeError("must be %s, found %s" % (description, text))
        return value
    convert.__name__ = description  # argparse names the type in its messages
    return convert


def at_least(minimum):
    return _number(int, lambda v: v >= minimum, "a whole number of at least %d" % minimum)


positive_int = at_least(1)
non_negative_int = at_least(0)
positive_float = _number(float, lambda v: v > 0, "a number above 0")
non_negative_float = _number(float, lambda v: v >= 0, "a number of at least 0")
fraction = _number(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
probability = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
