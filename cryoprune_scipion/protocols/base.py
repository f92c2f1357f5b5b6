"""What every cryoprune protocol repeats: the GPU and thread parameters and
running a `cryoprune` command as a job."""
import functools

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils

from .. import Plugin, bibtex
from ..engine.dihedral import TTA_COPIES

GPU_HELP = ("GPUs for the %s job, by id as nvidia-smi lists them, e.g. '0'%s. "
            "Use GPU = No runs on the CPU; Use GPU = Yes on a machine without a GPU "
            "also runs on the CPU, with a warning.")
THREADS_HELP = ("CPU threads of each job: they read, cut and preprocess the data, and "
                "run the network when it runs on the CPU. With a GPU, 2 to 4 keep it "
                "busy; on the CPU alone, give the cores you can spare. GPUs and threads "
                "add up: a job uses its GPUs and this many CPU cores.")
TTA_CHOICES = ["off", "2 copies (mirror)", "4 copies (mirrors, half turn)",
               "8 copies (mirrors, quarter turns)"]


class OptionalRange(params.Conditional):
    """pyworkflow's Range for a parameter that may be left empty."""

    def __init__(self, minValue, maxValue):
        params.Conditional.__init__(self, "Value is outside range [%s, %s]"
                                    % (minValue, maxValue), allowsNull=True)
        self._condition = lambda value: minValue <= value <= maxValue


@functools.lru_cache(maxsize=None)
def _references():
    return pwutils.parseBibTex(bibtex.__doc__)


def reference(key):
    """'(Li et al., Journal of Computational Biology 29, 2022)': a reference
    of bibtex.py for a methods text, where Scipion would show the bare key;
    software by its title and address."""
    entry = _references()[key]
    surname = entry["author"].split(" and ")[0].split(",")[0].strip()
    authors = surname if " and " not in entry["author"] else surname + " et al."
    if entry.get("url"):
        source = "%s, %s" % (entry["title"], entry["url"])
    else:
        source = entry["journal"] + (" %s" % entry["volume"] if entry.get("volume") else "")
    return "(%s, %s, %s)" % (authors, source, entry["year"])


class CryoPruneProtocol:
    """Mixin, listed before the pwem protocol class it goes with."""

    def _defineComputeParams(self, form, job, threads, severalGpus="", useGpu=True):
        """Hidden Use GPU / GPU IDs (drawn by Scipion beside the run mode)
        and the thread count of the parallel section; `job` names what the
        job does ('training', 'picking'...), `severalGpus` what it does with
        more than one GPU (empty: it uses one)."""
        form.addHidden(params.USE_GPU, params.BooleanParam, default=useGpu,
                       label="Use GPU", help="Run the %s job on the GPUs below; No runs it "
                                             "on the CPU." % job)
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU IDs",
                       help=GPU_HELP % (job, " or '0 1' (%s)" % severalGpus
                                        if severalGpus else ""))
        form.addParallelSection(threads=threads, mpi=0, binThreadsHelp=THREADS_HELP)

    def _defineTtaParam(self, form, default, help):
        """The test-time augmentation choice, `default` copies to start."""
        form.addParam("testTimeAugmentation", params.EnumParam, choices=TTA_CHOICES,
                      default=TTA_COPIES.index(default),
                      display=params.EnumParam.DISPLAY_COMBO,
                      label="Test-time augmentation", help=help)

    def getTtaCopies(self):
        """How many test-time copies the form asks for."""
        return TTA_COPIES[self.testTimeAugmentation.get()]

    def getGpuList(self):
        """No GPU with Use GPU off, so that a queue's submission script
        (hosts.conf, GPU_COUNT) asks for none: pyworkflow counts the GPU IDs
        field whatever the switch."""
        return super().getGpuList() if self.usesGpu() else []

    def runCryoprune(self, command, arguments):
        """Run `cryoprune COMMAND ARGUMENTS --threads N` as a job of this run."""
        Plugin.runCryoprune(self, command, "%s --threads %d" % (arguments,
                                                                 self.numberOfThreads.get()))

    def _warnings(self):
        return Plugin.gpuWarnings(self)
