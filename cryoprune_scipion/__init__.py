"""cryoprune-scipion: deep-learning picking, pruning and 2D classification
for Scipion.

Torch and ultralytics are imported lazily inside steps and the engine: an
import error at this level would silently hide the whole plugin from Scipion.
"""
import os
import sys

import pwem

from .constants import MODELS_DIR_VAR, PYTHON_VAR

__version__ = "0.1.0"
_logo = "cryoprune_logo.png"
_references = ["Li2022PickerOptimizer", "Yan2022CLClustering",
               "Tang2024SimcryoCluster"]


class Plugin(pwem.Plugin):
    _url = "https://github.com/cryoprune/scipion-em-cryoprune"
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(PYTHON_VAR, sys.executable,
                       description="Python interpreter that has cryoprune-scipion, "
                                   "torch and ultralytics installed; the protocols "
                                   "run `PYTHON -m cryoprune_scipion.cli` as their jobs")
        cls._defineEmVar(MODELS_DIR_VAR, "cryoprune-models",
                         description="Folder with local initial weights (for example "
                                     "ImageNet backbones); nothing is downloaded at run time")

    @classmethod
    def getEnviron(cls):
        """Environment for the jobs: no downloads, no update checks."""
        environ = pwem.pwutils.Environ(os.environ)
        environ.update({"YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False",
                        "TORCH_HOME": cls.getModelsDir()},
                       position=pwem.pwutils.Environ.REPLACE)
        return environ

    @classmethod
    def getModelsDir(cls, *paths):
        return os.path.join(cls.getVar(MODELS_DIR_VAR), *paths)

    @classmethod
    def getProgram(cls):
        """The interpreter that runs `-m cryoprune_scipion.cli` jobs."""
        return cls.getVar(PYTHON_VAR)

    @classmethod
    def runCryoprune(cls, protocol, command, arguments, **kwargs):
        """Run one `cryoprune COMMAND ...` step as a Scipion job, on the GPUs
        Scipion assigns to the step (its %(GPU)s pattern) or on the CPU."""
        device = "%(GPU)s" if protocol.usesGpu() else "cpu"
        protocol.runJob(cls.getProgram(), "-m cryoprune_scipion.cli %s %s --device %s"
                        % (command, arguments, device), env=cls.getEnviron(), **kwargs)

    @classmethod
    def defineBinaries(cls, env):
        """The model package: ImageNet ResNet weights for the pruning
        classifier, fetched once at install time by `scipion3 installb`."""
        modelsDir = cls.getModelsDir()
        fetch = ("%s -c \"import torchvision as tv, os; os.environ['TORCH_HOME']='%s'; "
                 "tv.models.resnet18(weights='IMAGENET1K_V1')\""
                 % (cls.getProgram(), modelsDir))
        env.addPackage("cryoprune-models", version="1.0", tar="void.tgz",
                       commands=[(fetch, os.path.join(modelsDir, "hub", "checkpoints"))],
                       neededProgs=[], default=False)
