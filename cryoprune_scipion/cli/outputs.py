"""The output contract that every `cryoprune` command keeps.

- A command never replaces or deletes a file that it did not create in this
  run, unless it is given `--overwrite`; an output that is one of its inputs
  is refused, also with `--overwrite`.
- Outputs are complete or absent: each file is written under a temporary name
  and moved into place. When a run fails or is interrupted (SIGINT, SIGTERM),
  the results it created are removed; saved training state stays, for
  `--resume`.
- With `--overwrite`, earlier results (and, without `--resume`, earlier
  training state) are removed before the run starts, not after.
- The training state of a run that completes is removed once its results
  are written: it served only to resume.

A command declares its outputs before doing any work:

    outputs = RunOutputs(args, inputs=[...])
    outputs.folder(args.out, results=["model.pt", ...], state=["checkpoint.pt"])

and `cli.main` removes the declared results when the run does not end well.
"""
import os
import shutil

from ..engine.io import InputError

_runs = []


def add_output_arguments(parser, resumable=False):
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in the output "
                             "(never an input)")
    if resumable:
        parser.add_argument("--resume", action="store_true",
                            help="continue the interrupted run whose saved state is in "
                                 "the output folder (starts afresh when there is none)")


class RunOutputs:
    """The files one command run writes, checked before any work."""

    def __init__(self, args, inputs=()):
        self.overwrite = args.overwrite
        self.resume = getattr(args, "resume", False)
        self.inputs = {os.path.realpath(p) for p in inputs if p}
        self.results = []
        self.state = []
        self.made_folders = []
        _runs.append(self)

    def folder(self, path, results=(), state=()):
        """An output folder with the result files (or folders) named in
        `results` and the resumable state in `state`, relative to it.
        Returns the folder's absolute path."""
        folder = os.path.abspath(path)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise InputError("--out %s is an existing file; give a folder" % path)
        self._refuse_inputs(path, [folder], inside=False)
        result_paths = [os.path.join(folder, name) for name in results]
        state_paths = [os.path.join(folder, name) for name in state]
        self._refuse_inputs(path, result_paths + state_paths)
        self._clear(result_paths, "results")
        if not self.resume:
            self._clear(state_paths, "the saved state of an interrupted run (give "
                                     "--resume to continue it)")
        self._make_writable_folder(folder, path)
        self.results.extend(result_paths)
        self.state.extend(state_paths)
        return folder

    def file(self, path):
        """A single output file; its folder is made when missing."""
        target = os.path.abspath(path)
        if os.path.isdir(target):
            raise InputError("--out %s is a folder; give a file name in it" % path)
        self._refuse_inputs(path, [target])
        self._clear([target], "results")
        self._make_writable_folder(os.path.dirname(target), os.path.dirname(path) or ".")
        self.results.append(target)
        return target

    def _refuse_inputs(self, shown, paths, inside=True):
        """Refuse outputs that are inputs or, when `inside`, that hold inputs
        (an output folder that may be removed as a whole)."""
        for path in paths:
            real = os.path.realpath(path)
            for source in self.inputs:
                if source == real or inside and source.startswith(real + os.sep):
                    raise InputError("--out %s: the output %s would replace the input %s; "
                                     "write the output elsewhere" % (shown, path, source))

    def _clear(self, paths, what):
        existing = [p for p in paths if os.path.lexists(p)]
        if not existing:
            return
        if not self.overwrite:
            raise InputError("%s already holds %s (%s); give --overwrite to replace them, "
                             "or another --out" % (os.path.dirname(existing[0]), what,
                                                   ", ".join(map(os.path.basename, existing))))
        for path in existing:
            _remove(path)

    def _make_writable_folder(self, folder, shown):
        if not os.path.isdir(folder):
            try:
                os.makedirs(folder)
            except OSError as error:
                raise InputError("cannot make the output folder %s (%s); choose a folder "
                                 "you can write to" % (shown, error.strerror or error)) \
                    from error
            self.made_folders.append(folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError("cannot write to the output folder %s (permission denied); "
                             "choose a folder you can write to" % shown)

    def discard(self):
        """Remove the results of a run that did not complete, and the output
        folders it made when nothing else is in them."""
        for path in self.results:
            if os.path.lexists(path):
                _remove(path)
        for folder in reversed(self.made_folders):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def discard_incomplete():
    """Called by `cli.main` when a run fails or is interrupted."""
    while _runs:
        _runs.pop().discard()


def forget_runs():
    """Called by `cli.main` when a run completed: its results stay, its
    training state goes."""
    while _runs:
        for path in _runs.pop().state:
            if os.path.lexists(path):
                _remove(path)
