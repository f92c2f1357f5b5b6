"""The engine and the `cryoprune` commands run where neither pyworkflow nor
pwem is installed: a lean job environment (CRYOPRUNE_PYTHON on a GPU node).

Each command runs as a subprocess in which importing pwem or pyworkflow
fails as if they were not installed (a sitecustomize module on PYTHONPATH
puts a finder first on sys.meta_path)."""
import os
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import cryoprune_scipion.engine
from cryoprune_scipion.engine.io import write_micrograph, write_stack, write_table

SCIPION_BLOCK = '''
import sys


class NoScipion:
    """Scipion is not installed here."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pwem", "pyworkflow"):
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


sys.meta_path.insert(0, NoScipion())
'''


@pytest.fixture
def lean(tmp_path):
    """run(*argv): runs `python ARGV` without pwem and pyworkflow; returns
    the finished process."""
    block_dir = tmp_path / "no-scipion"
    block_dir.mkdir()
    (block_dir / "sitecustomize.py").write_text(SCIPION_BLOCK)
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(block_dir), os.environ.get("PYTHONPATH")])))

    def run(*argv):
        return subprocess.run([sys.executable, *map(str, argv)], env=environ, cwd=tmp_path,
                              capture_output=True, text=True)
    return run


def test_scipion_is_blocked(lean):
    job = lean("-c", "import pwem")
    assert job.returncode != 0 and "No module named 'pwem'" in job.stderr


def test_engine_imports_without_scipion(lean):
    modules = [m.name for m in pkgutil.iter_modules(cryoprune_scipion.engine.__path__)]
    job = lean("-c", "import importlib, sys, cryoprune_scipion as c\n"
                     "for m in %r: importlib.import_module('cryoprune_scipion.engine.' + m)\n"
                     "assert not hasattr(c, 'Plugin')\n"
                     "assert not {'pwem', 'pyworkflow'} & set(sys.modules)\n" % modules)
    assert job.returncode == 0, job.stderr


def test_cli_runs_without_scipion(lean, tmp_path):
    help_job = lean("-m", "cryoprune_scipion.cli", "--help")
    assert help_job.returncode == 0, help_job.stderr
    assert "classify2d" in help_job.stdout and "extract" in help_job.stdout

    rng = np.random.default_rng(0)
    micrograph = tmp_path / "mic.mrc"
    write_micrograph(str(micrograph), rng.normal(size=(128, 128)).astype(np.float32), 3.0)
    write_table(str(tmp_path / "mic.csv"), ["x", "y"],
                [{"x": x, "y": y} for x, y in [(32, 32), (64, 64), (96, 90), (40, 90)]])
    extract = lean("-m", "cryoprune_scipion.cli", "extract", "--micrographs", micrograph,
                   "--coords", tmp_path, "--box", 32, "--out", tmp_path / "extracted")
    assert extract.returncode == 0, extract.stderr
    assert (tmp_path / "extracted" / "mic.mrcs").is_file()

    stack = tmp_path / "particles.mrcs"
    write_stack(str(stack), rng.normal(size=(24, 32, 32)).astype(np.float32), 3.0)
    classify = lean("-m", "cryoprune_scipion.cli", "classify2d", "--particles", stack,
                    "--classes", 2, "--out", tmp_path / "classes", "--epochs", 1,
                    "--working-size", 32, "--batch", 8, "--align-iterations", 1,
                    "--feature-rotations", 1, "--refine-passes", 0, "--device", "cpu")
    assert classify.returncode == 0, classify.stderr
    assert (tmp_path / "classes" / "averages.mrcs").is_file()
