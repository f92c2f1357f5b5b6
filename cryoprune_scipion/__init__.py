"""cryoprune-scipion: deep-learning picking, pruning and 2D classification
for Scipion.

The engine and the `cryoprune` commands need neither pyworkflow nor pwem, so
that the jobs can run in a lean environment of their own (CRYOPRUNE_PYTHON on
a GPU node): without them this package defines no Plugin. Where pwem is
installed, any error importing it is raised, and torch and ultralytics are
imported lazily inside steps and the engine: an import error at this level
would silently hide the whole plugin from Scipion.
"""
import os
import shutil
import subprocess
import sys

from .constants import BASE_PRUNER_DIR, MODEL_WEIGHTS, MODELS_DIR_VAR, PYTHON_VAR

SCIPION_PACKAGES = ("pwem", "pyworkflow")

try:
    import pwem
except ModuleNotFoundError as error:
    if error.name not in SCIPION_PACKAGES:  # Scipion is there but broken: say so
        raise
    pwem = None

__version__ = "0.2.0"
_logo = "cryoprune_logo.png"
_references = ["Li2022PickerOptimizer", "Yan2022CLClustering",
               "Tang2024SimcryoCluster"]

if pwem is not None:
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
                             description="Folder with local initial weights: ImageNet "
                                         "backbones and the base pruner (base-pruner/); "
                                         "nothing is downloaded at run time")

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
        def getBasePrunerDir(cls, backbone):
            """The base pruner of a backbone, made by `cryoprune base-pruner`."""
            return cls.getModelsDir(BASE_PRUNER_DIR, backbone)

        @classmethod
        def runCryoprune(cls, protocol, command, arguments, **kwargs):
            """Run one `cryoprune COMMAND ...` step as a Scipion job: with Use GPU
            on the GPUs Scipion assigns to the step (its %(GPU)s pattern), or on
            the CPU with a warning in the log when they are not there; otherwise
            on the CPU. Jobs write only in the protocol's own folders (and the
            plugin's model folder), so they may replace what an earlier try of
            the step left there."""
            device = "%(GPU)s --cpu-fallback" if protocol.usesGpu() else "cpu"
            protocol.runJob(cls.getProgram(), "-m cryoprune_scipion.cli %s %s --device %s "
                            "--overwrite" % (command, arguments, device),
                            env=cls.getEnviron(), **kwargs)

        @classmethod
        def hasGpu(cls):
            """Whether this machine has an NVIDIA GPU, found without importing
            torch: the driver's entries in /proc, else `nvidia-smi -L`."""
            gpus = "/proc/driver/nvidia/gpus"
            if os.path.isdir(gpus) and os.listdir(gpus):
                return True
            smi = shutil.which("nvidia-smi")
            if smi is None:
                return False
            try:
                listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return False
            return listing.returncode == 0 and "GPU" in listing.stdout

        @classmethod
        def gpuWarnings(cls, protocol):
            """Tell the user before the run that jobs asked to use the GPU will
            run on the CPU (see runCryoprune). Jobs sent to a queue run on other
            machines, so this one's GPUs do not matter then."""
            if protocol.usesGpu() and not protocol.useQueue() and not cls.hasGpu():
                return ["Use GPU is on but this machine has no GPU: the jobs will run on "
                        "the CPU, slowly. Set Use GPU to No to silence this."]
            return []

        @classmethod
        def defineBinaries(cls, env):
            """The model package, made once by `scipion3 installb
            cryoprune-models`: the base pruner, pretrained on simulated windows
            (about a minute on a CPU, no download), then ImageNet ResNet-18
            weights for the pruning classifier, fetched from the internet."""
            modelsDir = cls.getModelsDir()
            fetch = ("%s -c \"import torchvision as tv, os; os.environ['TORCH_HOME']='%s'; "
                     "tv.models.resnet18(weights='IMAGENET1K_V1')\""
                     % (cls.getProgram(), modelsDir))
            baseDir = cls.getBasePrunerDir("resnet18")
            base = ("%s -m cryoprune_scipion.cli base-pruner --out %s --threads %d --device cpu "
                    "--overwrite" % (cls.getProgram(), baseDir, os.cpu_count() or 1))
            env.addPackage("cryoprune-models", version="1.0", tar="void.tgz",
                           commands=[(base, os.path.join(baseDir, MODEL_WEIGHTS)),
                                     (fetch, os.path.join(modelsDir, "hub", "checkpoints"))],
                           neededProgs=[], default=False)
