"""Headless Scipion tests of the YOLO training and picking protocols and of
their converters, on simulated micrographs whose particle centres and views
are known.

The micrographs are rectangular (rows != columns), so a swap of x and y
anywhere between Scipion, the CSV files and the detector would put the
picks off the particles and fail the F1 bar.
"""
import os

import numpy as np
import pyworkflow.object as pwobj
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER
from pwem import Domain
from pwem.objects import Micrograph, SetOfCoordinates
from pwem.protocols import ProtImportMicrographs

from cryoprune_scipion.constants import CLASS_ATTR, SCORE_ATTR
from cryoprune_scipion.convert import (coordinatesPath, linkMicrographs,
                                       readCoordinatesCsv, writeCoordinatesCsv)
from cryoprune_scipion.engine.io import (InputError, read_coordinates, write_micrograph,
                                         write_table)
from cryoprune_scipion.engine.metrics import PickingScore, score_picks
from cryoprune_scipion.engine.simulate import barrel, simulate_micrograph
from cryoprune_scipion.objects import CryoPruneYoloModel
from cryoprune_scipion.protocols import (CryoPruneProtPickerOptimizer,
                                         CryoPruneProtPickerOptimizerTraining,
                                         CryoPruneProtYoloPicking, CryoPruneProtYoloTraining)
from cryoprune_scipion.protocols.protocol_pruner_training import INIT_SCRATCH
from cryoprune_scipion.viewers.viewer_yolo import (CryoPruneYoloTrainingViewer,
                                                   plotTrainingMetrics)
from coordinate_import import import_coordinates

SHAPE = (384, 512)          # rows, columns
PIXEL_SIZE = 4.0            # A/px: the barrel is about 37 px across
SNR = 3.0
N_MICROGRAPHS = 5           # sim_0..sim_2 annotated, sim_3 and sim_4 held out
ANNOTATED = ["sim_0", "sim_1", "sim_2"]
HELD_OUT = ["sim_3", "sim_4"]
BOX_SIZE = 48
DIAMETER = 2 * barrel().radius / PIXEL_SIZE
VIEWS = ["top", "side"]
EPOCHS = 25                 # YOLO from scratch starts finding particles after ~10
TILE_SIZE = 160             # small tiles: many training steps per epoch
MIN_F1 = 0.8


class TestYoloPicking(BaseTest):
    """Import simulated micrographs and per-view coordinates, train a YOLO
    picker briefly, pick the held-out micrographs."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.particles = cls._simulate(cls.getOutputPath("simulated"))
        cls.allMics = cls._importMicrographs("sim_*.mrc")
        cls.heldOutMics = cls._importMicrographs("sim_[34].mrc")
        cls.coordinateImports = {view: cls._importCoordinates(cls.allMics, ANNOTATED, view)
                                 for view in VIEWS}
        cls.heldOutImport = cls._importCoordinates(cls.heldOutMics, HELD_OUT, "top")

    @classmethod
    def _simulate(cls, folder):
        os.makedirs(folder, exist_ok=True)
        particles = {}
        for i in range(N_MICROGRAPHS):
            micrograph = simulate_micrograph(SHAPE, n_particles=40, pixel_size=PIXEL_SIZE,
                                             snr=SNR, seed=100 + i)
            write_micrograph(os.path.join(folder, "sim_%d.mrc" % i), micrograph.image,
                             PIXEL_SIZE)
            particles["sim_%d" % i] = micrograph.particles
        return particles

    @classmethod
    def _importMicrographs(cls, pattern):
        prot = cls.newProtocol(ProtImportMicrographs,
                               filesPath=cls.getOutputPath("simulated"),
                               filesPattern=pattern, samplingRate=PIXEL_SIZE,
                               voltage=300, sphericalAberration=2.7,
                               amplitudeContrast=0.1)
        cls.launchProtocol(prot)
        return prot.outputMicrographs

    @classmethod
    def _importCoordinates(cls, mics, names, view):
        """Coordinates of one view on the named micrographs."""
        def centres(mic):
            stem = os.path.splitext(mic.getMicName())[0]
            return [(particle["x"], particle["y"]) for particle in cls.particles[stem]
                    if particle["view"] == view] if stem in names else []
        return import_coordinates(cls, mics, centres, BOX_SIZE, "import %s" % view)

    def _newTraining(self, coordinateImports=None, **kwargs):
        values = dict(inputMicrographs=self.allMics, classNames=",".join(VIEWS),
                      useGpu=False, numberOfThreads=2, epochs=EPOCHS, patience=EPOCHS,
                      batchSize=4, valFraction=0.0, workingSize=SHAPE[1],
                      tileSize=TILE_SIZE)
        values.update(kwargs)
        prot = self.newProtocol(CryoPruneProtYoloTraining, **values)
        for importProt in coordinateImports or self.coordinateImports.values():
            prot.inputCoordinates.append(pwobj.Pointer(importProt,
                                                       extended="outputCoordinates"))
        return prot

    def test_train_and_pick(self):
        training = self.launchProtocol(self._newTraining())
        model = training.outputModel
        self.assertTrue(os.path.isfile(model.getFileName()))
        self.assertEqual(model.getClassNames(), VIEWS)
        self.assertEqual(model.getBoxSize(), BOX_SIZE)
        self.assertEqual(model.getWorkingSize(), SHAPE[1])
        metadata = model.getMetadata()
        self.assertEqual(metadata["micrographs_trained"], len(ANNOTATED))
        self.assertTrue(os.path.isfile(training._getExtraPath("model", "metrics.csv")))
        self.assertTrue(any("precision" in line for line in training.summary()))
        self.assertTrue(any("YOLO particle detector" in line for line in training.methods()))
        plotter = plotTrainingMetrics(training._getExtraPath("model", "metrics.csv"))
        plotter.savefig(self.getOutputPath("training_curves.png"))
        plotter.close()
        self.assertIn(CryoPruneYoloTrainingViewer,
                      Domain.findViewers(training, DESKTOP_TKINTER))

        picking = self.newProtocol(CryoPruneProtYoloPicking,
                                   inputMicrographs=self.heldOutMics, useGpu=False,
                                   threshold=0.25, streamingBatchSize=0)
        picking.inputModel.set(training)
        picking.inputModel.setExtended("outputModel")
        picking = self.launchProtocol(picking)

        allCoords = picking.outputCoordinates
        self.assertEqual(allCoords.getBoxSize(), BOX_SIZE)
        perClass = {view: getattr(picking, "outputCoordinates_%s" % view) for view in VIEWS}
        self.assertEqual(sum(s.getSize() for s in perClass.values()), allCoords.getSize())

        total, viewHits, matchedPicks = PickingScore(0, 0, 0), 0, 0
        for mic in self.heldOutMics:
            stem = os.path.splitext(mic.getMicName())[0]
            coords = [coord.clone() for coord in allCoords.iterCoordinates(mic)]
            for coord in coords:
                self.assertGreaterEqual(getattr(coord, SCORE_ATTR).get(), 0.25)
                self.assertLessEqual(getattr(coord, SCORE_ATTR).get(), 1.0)
                self.assertIn(getattr(coord, CLASS_ATTR).get(), VIEWS)
            truth = self.particles[stem]
            picks = np.array([coord.getPosition() for coord in coords], dtype=float)
            labels = np.array([(p["x"], p["y"]) for p in truth])
            score = score_picks(picks, labels, DIAMETER / 4,
                                [getattr(c, SCORE_ATTR).get() for c in coords])
            total = total + score
            hits, picked = self._viewAgreement(coords, truth)
            viewHits, matchedPicks = viewHits + hits, matchedPicks + picked
        print("YOLO picking on %d held-out micrographs: %s; view class right for %d of "
              "%d matched picks" % (len(HELD_OUT), total.as_dict(), viewHits, matchedPicks))
        self.assertGreaterEqual(total.f1, MIN_F1)
        self.assertGreaterEqual(viewHits, 0.8 * matchedPicks)
        summary = "\n".join(picking.summary())
        self.assertTrue(all("View class %s" % view in summary
                            for view in {c.getAttributeValue(CLASS_ATTR) for c in allCoords}))
        self.assertTrue(any("YOLO detector" in line for line in picking.methods()))
        for view, coordSet in perClass.items():
            for coord in coordSet:
                self.assertEqual(getattr(coord, CLASS_ATTR).get(), view)
        # Nothing written next to the inputs.
        self.assertEqual(sorted(os.listdir(self.getOutputPath("simulated"))),
                         ["sim_%d.mrc" % i for i in range(N_MICROGRAPHS)])
        self._pruneAfterPicking(picking)

    def _pruneAfterPicking(self, picking):
        """The pruning protocols chain after picking: a pruner trained with the
        top views of the picks as particles and the side views as a junk class
        splits the picks by view."""
        training = self.newProtocol(CryoPruneProtPickerOptimizerTraining, junkNames="side",
                                    initialWeights=INIT_SCRATCH, inputSize=32, epochs=8,
                                    batchSize=16, useGpu=False, numberOfThreads=2)
        training.inputGood.set(picking)
        training.inputGood.setExtended("outputCoordinates_top")
        training.inputBad.append(pwobj.Pointer(picking, extended="outputCoordinates_side"))
        self.launchProtocol(training)
        prune = self.newProtocol(CryoPruneProtPickerOptimizer, threshold=0.5, useGpu=False)
        prune.inputSet.set(picking)
        prune.inputSet.setExtended("outputCoordinates")
        prune.inputModel.set(training)
        prune.inputModel.setExtended("outputModel")
        self.launchProtocol(prune)
        kept, discarded = prune.outputCoordinates, prune.outputCoordinates_discarded
        self.assertEqual(kept.getSize() + discarded.getSize(),
                         picking.outputCoordinates.getSize())
        tops = {(c.getMicId(), c.getPosition()) for c in picking.outputCoordinates_top}
        keptTops = sum((c.getMicId(), c.getPosition()) in tops for c in kept)
        self.assertGreaterEqual(keptTops, 0.8 * kept.getSize())
        self.assertGreaterEqual(keptTops, 0.8 * len(tops))

    @staticmethod
    def _viewAgreement(coords, truth):
        """Picks within a quarter diameter of a particle: how many have the
        particle's view."""
        hits = picked = 0
        for coord in coords:
            x, y = coord.getPosition()
            distances = [np.hypot(p["x"] - x, p["y"] - y) for p in truth]
            nearest = int(np.argmin(distances))
            if distances[nearest] <= DIAMETER / 4:
                picked += 1
                hits += truth[nearest]["view"] == getattr(coord, CLASS_ATTR).get()
        return hits, picked

    def test_plugin_registers_the_protocols(self):
        protocols = Domain.getProtocols()
        for prot in (CryoPruneProtYoloTraining, CryoPruneProtYoloPicking):
            self.assertIs(protocols.get(prot.__name__), prot)

    # --------------------------- validation ----------------------------------
    def assertValidationError(self, prot, fragment):
        errors = prot.validate()
        self.assertTrue(any(fragment in error for error in errors),
                        "no error with %r in %s" % (fragment, errors))

    def test_training_validation(self):
        self.assertEqual(self._newTraining().validate(), [])
        self.assertValidationError(self._newTraining(classNames="top"),
                                   "1 view class names (top) for 2 coordinate sets")
        self.assertValidationError(self._newTraining(classNames="top,side view"),
                                   "Invalid view class names side view")
        self.assertValidationError(self._newTraining(wavelet="db99"), "Unknown wavelet 'db99'")
        self.assertValidationError(self._newTraining(tileSize=100), "multiple of 32 px")
        self.assertValidationError(self._newTraining(boxSize=400),
                                   "larger than the micrographs (512 x 384 px)")
        self.assertValidationError(self._newTraining(initialWeights="/no/such/yolov8n.pt"),
                                   "/no/such/yolov8n.pt not found")
        empty = self._importCoordinates(self.allMics, [], "top")
        self.assertValidationError(self._newTraining(coordinateImports=[empty],
                                                     classNames="top"), "is empty")
        self.assertValidationError(
            self._newTraining(coordinateImports=[self.heldOutImport], classNames="top"),
            "No coordinate of outputCoordinates")

    def test_picking_validation(self):
        folder = self.getOutputPath("fake_model")
        os.makedirs(folder, exist_ok=True)
        for name in ("model.pt", "model.json"):
            open(os.path.join(folder, name), "w").close()

        def newPicking(filename=os.path.join(folder, "model.pt"), classNames=VIEWS,
                       **kwargs):
            model = CryoPruneYoloModel(filename=filename)
            model.setClassNames(classNames)
            model.setBoxSize(BOX_SIZE)
            prot = self.newProtocol(CryoPruneProtYoloPicking,
                                    inputMicrographs=self.heldOutMics, **kwargs)
            prot.inputModel.set(model)
            return prot

        self.assertEqual(newPicking().validate(), [])  # threshold empty: the model's
        self.assertValidationError(newPicking(threshold=1.5), "outside range [0.0, 1.0]")
        self.assertValidationError(newPicking(filename="/no/such/model.pt"),
                                   "/no/such/model.pt not found")
        self.assertValidationError(newPicking(classNames=["top", "side view"]),
                                   "Unknown view class names side view")
        self.assertValidationError(newPicking(boxSize=400), "larger than the micrographs")

    # --------------------------- converters ----------------------------------
    def test_coordinates_to_csv(self):
        """Per-view coordinates to one CSV per annotated micrograph: same
        positions, the view as class, nothing for other micrographs."""
        folder = self.getOutputPath("converted")
        coordSets = [self.coordinateImports[view].outputCoordinates for view in VIEWS]
        mics = {mic.getObjId(): mic.getMicName() for mic in self.allMics}
        counts = writeCoordinatesCsv(coordSets, VIEWS, folder, mics)
        self.assertEqual(sorted(mics[micId][:-4] for micId in counts), ANNOTATED)
        for micId, micName in mics.items():
            stem = os.path.splitext(micName)[0]
            path = coordinatesPath(folder, micId)
            if stem not in ANNOTATED:
                self.assertFalse(os.path.exists(path))
                continue
            rows = sorted((r["x"], r["y"], r["class"]) for r in read_coordinates(path))
            expected = sorted((round(p["x"]), round(p["y"]), p["view"])
                              for p in self.particles[stem])
            self.assertEqual(rows, expected)
            self.assertEqual(counts[micId], len(expected))
        # Same micrograph ids, other micrographs: nothing is written.
        self.assertEqual(writeCoordinatesCsv([self.heldOutImport.outputCoordinates], ["top"],
                                             self.getOutputPath("not_converted"), mics), {})

    def test_picks_to_coordinates(self):
        """Pick CSVs (float x column, y row) to Scipion coordinates within
        half a pixel, also at the far corner of a rectangular micrograph,
        with score and class saved with the set."""
        mic = self.heldOutMics.getFirstItem().clone()
        picks = [{"x": 10.4, "y": 20.6, "score": 0.91, "class": "top"},
                 {"x": SHAPE[1] - 1.3, "y": SHAPE[0] - 1.2, "score": 0.42, "class": "side"},
                 {"x": 300.5001, "y": 100.0, "score": 0.7, "class": "side"}]
        csvPath = self.getOutputPath("picks.csv")
        write_table(csvPath, ["x", "y", "score", "class"], picks)
        sqlite = self.getOutputPath("picks.sqlite")
        coordSet = SetOfCoordinates(filename=sqlite)
        self.assertEqual(readCoordinatesCsv(csvPath, mic, coordSet, VIEWS), len(picks))
        coordSet.write()
        coordSet.close()
        reloadedSet = SetOfCoordinates(filename=sqlite)
        reloaded = [coord.clone() for coord in reloadedSet]
        reloadedSet.close()
        self.assertEqual(len(reloaded), len(picks))
        for coord, pick in zip(reloaded, picks):
            self.assertLessEqual(abs(coord.getX() - pick["x"]), 0.5)
            self.assertLessEqual(abs(coord.getY() - pick["y"]), 0.5)
            self.assertEqual(coord.getMicId(), mic.getObjId())
            self.assertAlmostEqual(getattr(coord, SCORE_ATTR).get(), pick["score"])
            self.assertEqual(getattr(coord, CLASS_ATTR).get(), pick["class"])

        write_table(csvPath, ["x", "y", "score", "class"],
                    [{"x": 1, "y": 2, "score": 0.5, "class": "junk"}])
        with self.assertRaisesRegex(InputError, "unknown view class 'junk'"):
            readCoordinatesCsv(csvPath, mic, SetOfCoordinates(), VIEWS)

    def test_link_micrographs(self):
        """Micrographs with the same base name in different folders get
        different links, each pointing at its own file."""
        mics = []
        for micId, sub in [(7, "a"), (8, "b")]:
            folder = self.getOutputPath("same_name", sub)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, "micrograph.mrc")
            write_micrograph(path, np.full((8, 12), micId, dtype=np.float32))
            mic = Micrograph(location=path)
            mic.setObjId(micId)
            mics.append(mic)
        links = linkMicrographs(mics, self.getOutputPath("links"))
        self.assertEqual([os.path.basename(link) for link in links],
                         ["mic_000007.mrc", "mic_000008.mrc"])
        for link, mic in zip(links, mics):
            self.assertEqual(os.path.realpath(link), os.path.realpath(mic.getFileName()))
