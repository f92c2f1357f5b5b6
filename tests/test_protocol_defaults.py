"""Each of the five protocols run with its form defaults, only the required
inputs set, as a new user would: "Use GPU" stays on, so on a machine without
a GPU the protocols warn before the run and their jobs fall back to the CPU.
The data are the smallest on which the defaults run: one simulated 512 x
128 px micrograph (a 1024 x 256 working image, five 256 px tiles) and 20
particle windows of 32 px. On two CPU cores the file takes a few minutes,
mostly YOLO's 100 epochs (about 2 minutes)."""
import os
from unittest import mock

import numpy as np
import pyworkflow.object as pwobj
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.protocols import ProtImportCoordinates, ProtImportMicrographs, ProtImportParticles

from cryoprune_scipion import Plugin
from cryoprune_scipion.constants import (CLASS_ATTR, JUNK_CLASS_ATTR, MODEL_WEIGHTS,
                                         PARTICLE_SCORE_ATTR, SCORE_ATTR)
from cryoprune_scipion.engine.io import write_micrograph, write_stack
from cryoprune_scipion.engine.picking import Detection, stored_threshold
from cryoprune_scipion.engine.simulate import (barrel, simulate_micrograph,
                                                simulate_particle_stack)
from cryoprune_scipion.protocols import (CryoPruneProtContrastive2D,
                                         CryoPruneProtPickerOptimizer,
                                         CryoPruneProtPickerOptimizerTraining,
                                         CryoPruneProtYoloPicking, CryoPruneProtYoloTraining)
from cryoprune_scipion.protocols.class_names import namesFromInputs
from coordinate_import import import_coordinates

SHAPE = (128, 512)      # rows, columns
PIXEL_SIZE = 6.0        # A/px: the barrel is about 24 px across
BOX_SIZE = 32
N_EXAMPLES = 10         # particle and junk windows each: the least a class takes
NO_GPU = "this machine has no GPU"


def labelled(prot, label):
    """A run name (the objLabel keyword of newProtocol is not kept)."""
    prot.setObjLabel(label)
    return prot


class TestProtocolDefaults(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.gpu = Plugin.hasGpu()
        folder = cls.getOutputPath("simulated")
        os.makedirs(folder)
        micrograph = simulate_micrograph(SHAPE, n_particles=8, pixel_size=PIXEL_SIZE,
                                         snr=3.0, seed=1)
        write_micrograph(os.path.join(folder, "mic.mrc"), micrograph.image, PIXEL_SIZE)
        cls.particles = micrograph.particles
        images = simulate_particle_stack(barrel(), [(0.0, 0.0), (0.0, 90.0)], N_EXAMPLES,
                                         box=BOX_SIZE, pixel_size=PIXEL_SIZE, snr=2.0,
                                         seed=2)[0]
        background = np.random.default_rng(3).normal(
            scale=images.std(), size=images.shape).astype(np.float32)
        write_stack(os.path.join(folder, "good.mrcs"), images, PIXEL_SIZE)
        write_stack(os.path.join(folder, "empty.mrcs"), background, PIXEL_SIZE)
        cls.mics = cls.launchProtocol(cls.newProtocol(
            ProtImportMicrographs, filesPath=folder, filesPattern="mic.mrc",
            samplingRate=PIXEL_SIZE, voltage=300, sphericalAberration=2.7,
            amplitudeContrast=0.1)).outputMicrographs
        # Without CTF: the default phase flip must step aside.
        cls.good, cls.empty, cls.mixed = [cls.launchProtocol(labelled(cls.newProtocol(
            ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_FILES,
            filesPath=folder, filesPattern=pattern, samplingRate=PIXEL_SIZE, voltage=300,
            sphericalAberration=2.7, amplitudeContrast=0.1), label))
            for pattern, label in [("good.mrcs", "good"), ("empty.mrcs", "empty ice"),
                                   ("*.mrcs", "picks")]]

    def assertGpuHandled(self, prot):
        """Without a GPU a warning before the run and the jobs' fallback to
        the CPU in the log; with one, no warning."""
        if self.gpu:
            self.assertEqual(prot.warnings(), [])
            return
        self.assertTrue(any(NO_GPU in warning for warning in prot.warnings()))
        with open(prot.getLogPaths()[0]) as log:
            self.assertIn("running on the CPU", log.read())

    def importCoordinates(self, view, label):
        centres = [(p["x"], p["y"]) for p in self.particles if p["view"] == view]
        return import_coordinates(self, self.mics, lambda mic: centres, BOX_SIZE, label)

    def test_yolo_training_and_picking(self):
        training = self.newProtocol(CryoPruneProtYoloTraining, inputMicrographs=self.mics)
        for view in ("top", "side"):
            training.inputCoordinates.append(pwobj.Pointer(
                self.importCoordinates(view, "%s views" % view), extended="outputCoordinates"))
        self.launchProtocol(training)
        model = training.outputModel
        self.assertEqual(model.getClassNames(), ["top_views", "side_views"])
        self.assertEqual(model.getBoxSize(), BOX_SIZE)
        self.assertEqual(model.getWorkingSize(), 1024)
        self.assertEqual(model.getMetadata()["micrographs_trained"], 1)
        # 8 particles leave no validation strips to choose the preprocessing on
        self.assertEqual(model.getMetadata()["preprocessing_choice"],
                         {"chosen": "filters", "trials": {}})
        self.assertIn("Preprocessing: restored contrast, not chosen by validation (no "
                      "validation strips)", training.summary())
        self.assertGpuHandled(training)

        picking = self.newProtocol(CryoPruneProtYoloPicking, inputMicrographs=self.mics,
                                   inputModel=model)
        self.launchProtocol(picking)
        picks = picking.outputCoordinates
        self.assertGreater(picks.getSize(), 0)
        self.assertEqual(picks.getBoxSize(), BOX_SIZE)
        # the threshold is the one the training chose for the default copies
        threshold = stored_threshold(model.getMetadata(), Detection.tta)
        self.assertEqual(picking.getThreshold(), threshold)
        self.assertIn("Confidence threshold %s (chosen by the training)" % threshold,
                      picking.summary())
        perView = 0
        for name in model.getClassNames():
            viewPicks = getattr(picking, "outputCoordinates_%s" % name)
            perView += viewPicks.getSize()
            for coord in viewPicks:
                self.assertEqual(getattr(coord, CLASS_ATTR).get(), name)
                self.assertGreaterEqual(getattr(coord, SCORE_ATTR).get(), threshold)
        self.assertEqual(perView, picks.getSize())
        self.assertGpuHandled(picking)

    def test_pruner_training_and_pruning(self):
        training = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                    inputGood=self.good.outputParticles)
        training.inputBad.append(pwobj.Pointer(self.empty, extended="outputParticles"))
        self.assertEqual(training.validate(), [])
        self.launchProtocol(training)
        model = training.outputModel
        self.assertEqual(model.getClassNames(), ["particle", "empty_ice"])
        self.assertEqual(model.getBoxSize(), BOX_SIZE)
        # No ImageNet weights here: automatic trained from scratch, no base pruner made.
        self.assertEqual(model.getMetadata()["initial_weights"], "")
        self.assertFalse(os.path.exists(Plugin.getBasePrunerDir("resnet18")))
        with open(training.getLogPaths()[0]) as log:
            self.assertIn("No ImageNet weights of resnet18", log.read())
        self.assertGpuHandled(training)

        pruning = self.newProtocol(CryoPruneProtPickerOptimizer,
                                   inputSet=self.mixed.outputParticles, inputModel=model)
        self.launchProtocol(pruning)
        kept, discarded = pruning.outputParticles, pruning.outputParticles_discarded
        self.assertEqual(kept.getSize() + discarded.getSize(), 2 * N_EXAMPLES)
        for outputSet, isKept in ((kept, True), (discarded, False)):
            self.assertTrue(outputSet.isStreamClosed())
            for particle in outputSet:
                self.assertEqual(getattr(particle, PARTICLE_SCORE_ATTR).get() >= 0.5, isKept)
                self.assertIn(getattr(particle, JUNK_CLASS_ATTR).get(), model.getClassNames())
        self.assertGpuHandled(pruning)

    def test_contrastive_2d(self):
        particles = self.mixed.outputParticles
        self.assertFalse(particles.hasCTF())
        prot = self.newProtocol(CryoPruneProtContrastive2D, inputParticles=particles)
        self.assertEqual(prot.validate(), [])
        self.launchProtocol(prot)
        classes = prot.outputClasses
        self.assertEqual(classes.getSize(), prot.numberOfClasses.get())
        self.assertEqual(sum(c.getSize() for c in classes), 2 * N_EXAMPLES)
        self.assertEqual(prot.outputEncoder.getWorkingSize(), BOX_SIZE)
        self.assertIn("Particles not phase-flipped: they have no CTF.", prot.summary())
        self.assertNotIn("phase-flipped", " ".join(prot.methods()))
        self.assertGpuHandled(prot)

    def test_gpu_warning(self):
        prot = self.newProtocol(CryoPruneProtContrastive2D)
        with mock.patch.object(Plugin, "hasGpu", return_value=True):
            self.assertEqual(prot.warnings(), [])
        with mock.patch.object(Plugin, "hasGpu", return_value=False):
            self.assertTrue(any(NO_GPU in warning for warning in prot.warnings()))
            prot.useGpu.set(False)
            self.assertEqual(prot.warnings(), [])

    def test_class_names_from_inputs(self):
        def output(label, name):
            return pwobj.Pointer(labelled(self.newProtocol(ProtImportCoordinates), label),
                                 extended=name)
        pointers = [output("import coordinates", "outputCoordinates_ice"),
                    output("import coordinates", "outputCoordinates"),
                    output("2D picks (2)", "outputCoordinates"),
                    output("ice", "outputCoordinates"),
                    output("particle", "outputCoordinates"),
                    output("???", "outputCoordinates")]
        self.assertEqual(namesFromInputs(pointers, "junk", reserved=["particle"]),
                         ["ice", "import_coordinates", "junk_2D_picks_2", "ice_2",
                          "particle_2", "junk6"])


def test_base_pruner_command(tmp_path):
    """`cryoprune base-pruner` makes a pruner of the simulated classes, and
    keeps the output contract: no replacing without --overwrite."""
    from cryoprune_scipion.cli import main
    from cryoprune_scipion.engine.base_pruner import CLASSES
    from cryoprune_scipion.engine.io import read_model_metadata
    out = tmp_path / "base"
    args = ["base-pruner", "--out", str(out), "--micrographs", "10", "--epochs", "1",
            "--threads", "2"]
    assert main(args) == 0
    metadata = read_model_metadata(str(out / MODEL_WEIGHTS), "pruner")
    assert metadata["classes"] == CLASSES
    assert metadata["base_recipe"]["micrographs"] == 10
    assert main(args) == 2
