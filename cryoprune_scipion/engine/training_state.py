"""What the trainings share for `--resume`: the state saved after every
epoch, the check that a resumed run is the run that saved it, and the
per-epoch log line with the time left.

A saved state carries `run`, a description of the run (settings and a
fingerprint of the data); a run resumes only the state of a run described
the same way, since continuing another training's optimiser, schedule or
data split would give a model that no setting describes.
"""
import hashlib
import logging
import os
import time

import numpy as np

from .io import InputError, replacing

logger = logging.getLogger(__name__)


def fingerprint(*arrays):
    """A short hash of the arrays' values: tells whether a run sees the same data."""
    digest = hashlib.sha1()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def save_state(path, state):
    """Write a torch checkpoint completely or not at all (a run killed while
    saving keeps the previous epoch's state)."""
    import torch
    with replacing(path) as partial:
        torch.save(state, partial)


def load_state(path, run):
    """The state at `path` saved by an interrupted run described as `run`;
    None when there is none."""
    import torch
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError("%s: cannot read the saved training state (%s); start again "
                         "without --resume (with --overwrite)" % (path, error)) from error
    check_same_run(state.get("run", {}), run, path)
    return state


def check_same_run(saved, run, path):
    """Refuse to resume the state at `path` when it was saved by a run with
    other settings or data."""
    saved, run = _flat(saved), _flat(run)
    changed = sorted(key for key in set(saved) | set(run) if saved.get(key) != run.get(key))
    if changed:
        raise InputError("%s was saved by a run with other settings or data (%s); resume "
                         "with the same ones, or start again without --resume (with "
                         "--overwrite)" % (path, "; ".join(
                             "%s: %s then, %s now" % (key, _short(saved.get(key)),
                                                      _short(run.get(key)))
                             for key in changed)))


def _flat(description, prefix=""):
    """{"settings": {"epochs": 4}} as {"settings.epochs": 4}, so that a
    message names the setting that differs."""
    flat = {}
    for key, value in description.items():
        if isinstance(value, dict):
            flat.update(_flat(value, prefix + key + "."))
        else:
            flat[prefix + key] = value
    return flat


def _short(value, width=40):
    text = str(value)
    return text if len(text) <= width else text[:width - 3] + "..."


class EpochLog:
    """One log line per epoch: its figures, its seconds and the time the
    remaining epochs should take at the mean pace of this run's epochs."""

    def __init__(self, epochs, log=logger.info):
        self.epochs = epochs
        self.log = log
        self.durations = []
        self.started = time.perf_counter()

    def start(self):
        self.started = time.perf_counter()

    def done(self, epoch, figures):
        """Log epoch `epoch` (counted from 1) with `figures` {name: value};
        the next epoch's time runs from now."""
        seconds = time.perf_counter() - self.started
        self.durations.append(seconds)
        left = (self.epochs - epoch) * float(np.mean(self.durations))
        shown = "  ".join("%s %.4f" % item for item in figures.items())
        self.log("epoch %d/%d  %s  %.1f s, %s left"
                 % (epoch, self.epochs, shown, seconds, duration(left)))
        self.start()


def duration(seconds):
    """'1 h 05 min', '3 min 20 s' or '12 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return "%d h %02d min" % (seconds // 3600, seconds % 3600 // 60)
    if seconds >= 60:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d s" % seconds
