"""Headless Scipion tests of the PickerOptimizer training and pruning
protocols on simulated micrographs whose particles and ice are known."""
import os

import numpy as np
import pyworkflow.object as pwobj
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.objects import Coordinate
from pwem.protocols import ProtImportMicrographs, ProtImportParticles, ProtUnionSet

from cryoprune_scipion.constants import (CLASS_ATTR, EDGE_CLASS, JUNK_CLASS_ATTR,
                                         PARTICLE_SCORE_ATTR, SCORE_ATTR)
from cryoprune_scipion.engine.io import write_micrograph, write_stack
from cryoprune_scipion.engine.pruning import MIN_CLASS_EXAMPLES
from cryoprune_scipion.engine.simulate import simulate_micrograph
from cryoprune_scipion.engine.windows import extract_windows
from cryoprune_scipion.objects import CryoPrunePrunerModel
from cryoprune_scipion.wizards import CryoPruneBoxSizeWizard
from cryoprune_scipion.protocols import (CryoPruneProtPickerOptimizer,
                                         CryoPruneProtPickerOptimizerTraining)
from cryoprune_scipion.protocols.protocol_pruner_training import INIT_AUTOMATIC, INIT_BASE
from cryoprune_scipion.protocols.protocol_pruning import repeatScores
from coordinate_import import import_coordinates

SHAPE = (384, 512)
PIXEL_SIZE = 4.0           # the barrel is about 37 px across
BOX_SIZE = 48
DOWN_FACTOR = 1.5          # 32 px windows
TRAIN, TEST = ["sim_0", "sim_1", "sim_2"], ["sim_3", "sim_4"]


def pickerAttributes(coord):
    """A picker's confidence and view class, made up from the position."""
    return {SCORE_ATTR: pwobj.Float(round(0.25 + (coord.getX() % 75) / 100, 2)),
            CLASS_ATTR: pwobj.String("top" if coord.getY() % 2 else "side")}


def background(micrograph, n, rng):
    """Centres at least a box away from every particle and ice blob."""
    taken = np.array([(p["x"], p["y"]) for p in micrograph.particles + micrograph.junk])
    out = []
    while len(out) < n:
        xy = rng.uniform(BOX_SIZE / 2, np.array(SHAPE[::-1]) - BOX_SIZE / 2)
        if np.min(np.hypot(*(taken - xy).T)) > BOX_SIZE:
            out.append(xy)
    return out


def crossesEdge(coord):
    """Whether the coordinate's box reaches past its micrograph (centre pixel
    box // 2)."""
    left, top = coord.getX() - BOX_SIZE // 2, coord.getY() - BOX_SIZE // 2
    return (left < 0 or top < 0 or left + BOX_SIZE > SHAPE[1]
            or top + BOX_SIZE > SHAPE[0])


def test_a_repeated_pick_is_scored_like_its_twin():
    """`cryoprune extract` cuts a position once: a second pick within 1 px
    on the same micrograph (a top and a side box on one particle) takes the
    first one's score; the same position on another micrograph does not."""
    coords = []
    for objId, (micId, x, y) in enumerate([(1, 100, 100), (1, 101, 100), (1, 200, 50),
                                           (2, 100, 100)], start=1):
        coord = Coordinate(x=x, y=y)
        coord.setMicId(micId)
        coord.setObjId(objId)
        coords.append(coord)
    scored = {1: (0.9, "particle"), 3: (0.2, "ice")}
    assert repeatScores(coords, scored) == {2: (0.9, "particle")}


class TestPickerOptimizer(BaseTest):
    training = None  # see train()

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("simulated")
        os.makedirs(folder)
        rng = np.random.default_rng(0)
        cls.centres = {}  # micrograph -> kind -> [(x, y)]
        for i, name in enumerate(TRAIN + TEST):
            micrograph = simulate_micrograph(SHAPE, n_particles=14, pixel_size=PIXEL_SIZE,
                                             snr=1.0, junk=("ice",) * 5, seed=10 + i)
            write_micrograph(os.path.join(folder, name + ".mrc"), micrograph.image,
                             PIXEL_SIZE)
            cls.centres[name] = {
                "particle": [(p["x"], p["y"]) for p in micrograph.particles],
                "ice": [(j["x"], j["y"]) for j in micrograph.junk],
                "background": background(micrograph, 8, rng),
                # picked by hand for a second round (an rng of its own)
                "more background": background(micrograph, 4, np.random.default_rng(i)),
                "edge": [(3.0, SHAPE[0] / 2)]}  # a pick whose box crosses the edge
        prot = cls.newProtocol(ProtImportMicrographs, filesPath=folder,
                               filesPattern="sim_*.mrc", samplingRate=PIXEL_SIZE,
                               voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1)
        cls.mics = cls.launchProtocol(prot).outputMicrographs

    @classmethod
    def importCoordinates(cls, names, kinds, label, attributes=None):
        """The import of the named micrographs' centres of `kinds`, and
        whether each coordinate is a particle, in the order of the set."""
        def centres(mic):
            stem = os.path.splitext(mic.getMicName())[0]
            return [centre for kind in kinds for centre in cls.centres[stem][kind]
                    ] if stem in names else []
        stems = [os.path.splitext(mic.getMicName())[0] for mic in cls.mics]
        truth = [kind == "particle" for stem in stems if stem in names
                 for kind in kinds for _ in cls.centres[stem][kind]]
        return import_coordinates(cls, cls.mics, centres, BOX_SIZE, label,
                                  attributes), truth

    @classmethod
    def train(cls):
        """The training on coordinates of particles, ice and background
        (picked by hand) of the training micrographs; run once for the
        tests that start from its model."""
        if cls.training is None:
            good, _ = cls.importCoordinates(TRAIN, ["particle"], "good")
            ice, _ = cls.importCoordinates(TRAIN, ["ice"], "ice")
            empty, _ = cls.importCoordinates(TRAIN, ["background"], "background")
            prot = cls.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                   inputGood=good.outputCoordinates,
                                   junkNames="ice,background", downFactor=DOWN_FACTOR,
                                   initialWeights=0, inputSize=32, epochs=8, batchSize=16,
                                   valFraction=0.2, useGpu=False, numberOfThreads=2)
            for importProt in (ice, empty):
                prot.inputBad.append(pwobj.Pointer(importProt, extended="outputCoordinates"))
            cls.training = cls.launchProtocol(prot)
        return cls.training

    def test_train_and_prune_coordinates_and_particles(self):
        training = self.train()
        model = training.outputModel
        self.assertEqual(model.getClassNames(), ["particle", "ice", "background"])
        self.assertEqual(model.getBoxSize(), BOX_SIZE)
        self.assertEqual(model.getDownFactor(), DOWN_FACTOR)
        self.assertEqual(model.getWindowSize(), 32)
        self.assertTrue(os.path.isfile(training._getExtraPath("validation.json")))
        self.assertTrue(any("F1" in line for line in training.summary()))

        picks, truth = self.importCoordinates(TEST, ["particle", "ice", "background", "edge"],
                                              "picks", pickerAttributes)
        inputSet = picks.outputCoordinates
        picker = {c.getObjId(): (getattr(c, SCORE_ATTR).get(), getattr(c, CLASS_ATTR).get())
                  for c in inputSet}
        isParticle = dict(zip([c.getObjId() for c in inputSet.iterItems(orderBy="id")],
                              truth))
        # Box size and downsampling left empty: the model's.
        prune = self.newProtocol(CryoPruneProtPickerOptimizer, inputSet=inputSet,
                                 inputModel=model, threshold=0.5,
                                 chunkSize=30, useGpu=False, numberOfThreads=2)
        self.launchProtocol(prune)
        kept, discarded = prune.outputCoordinates, prune.outputCoordinates_discarded
        keptIds = [c.getObjId() for c in kept]
        discardedIds = [c.getObjId() for c in discarded]
        # The two outputs partition the input.
        self.assertFalse(set(keptIds) & set(discardedIds))
        self.assertEqual(sorted(keptIds + discardedIds), sorted(isParticle))
        self.assertEqual(kept.getBoxSize(), BOX_SIZE)
        for outputSet, isKept in ((kept, True), (discarded, False)):
            for coord in outputSet:
                score = getattr(coord, PARTICLE_SCORE_ATTR).get()
                self.assertEqual(score >= 0.5, isKept)
                # A box crossing the micrograph edge is not extracted: edge, score 0.
                label = getattr(coord, JUNK_CLASS_ATTR).get()
                self.assertEqual(label == EDGE_CLASS, crossesEdge(coord))
                if label == EDGE_CLASS:
                    self.assertEqual(score, 0.0)
                else:
                    self.assertIn(label, ["particle", "ice", "background"])
                # The picker's confidence and view class are kept.
                self.assertEqual((getattr(coord, SCORE_ATTR).get(),
                                  getattr(coord, CLASS_ATTR).get()),
                                 picker[coord.getObjId()])
        self.assertAttributesSurviveUnion(prune, picker)
        self.assertEqual(sum(crossesEdge(c) for c in discarded), len(TEST))
        self.assertWindowsCutByJobs(training)
        self.assertWindowsCutByJobs(prune)
        summary = " ".join(prune.summary())
        self.assertIn("Kept %d of %d items" % (len(keptIds), len(isParticle)), summary)
        self.assertIn("by predicted class: particle", summary)
        inputPurity = np.mean(truth)
        keptPurity = np.mean([isParticle[i] for i in keptIds])
        recall = sum(isParticle[i] for i in keptIds) / sum(truth)
        print("pruning: input purity %.3f, kept purity %.3f, recall %.3f"
              % (inputPurity, keptPurity, recall))
        self.assertLess(inputPurity, 0.6)
        self.assertGreaterEqual(keptPurity, 0.85)
        self.assertGreaterEqual(recall, 0.7)

        # The same picks as a SetOfParticles: scores agree with the coordinates'.
        particles = self.importParticles(inputSet)
        prunePart = self.newProtocol(CryoPruneProtPickerOptimizer, inputSet=particles,
                                     inputModel=model, downFactor=DOWN_FACTOR,
                                     useGpu=False)
        self.launchProtocol(prunePart)
        scores = {p.getObjId(): getattr(p, PARTICLE_SCORE_ATTR).get()
                  for outputSet in (prunePart.outputParticles,
                                    prunePart.outputParticles_discarded)
                  for p in outputSet}
        self.assertEqual(len(scores), inputSet.getSize())
        # Particles imported in coordinate id order; edge coordinates have no window.
        coords = sorted((c.getObjId(), getattr(c, PARTICLE_SCORE_ATTR).get(), crossesEdge(c))
                        for out in (kept, discarded) for c in out)
        pairs = [(score, scores[particleId]) for (_, score, edge), particleId
                 in zip(coords, sorted(scores)) if not edge]
        self.assertGreater(len(pairs), 0.9 * len(coords))
        np.testing.assert_allclose(*zip(*pairs), atol=1e-4)

    def assertAttributesSurviveUnion(self, prune, picker):
        """A set made from the pruning outputs by a Scipion protocol (the
        union of kept and discarded) carries both the picker's and the
        pruner's attributes."""
        outputs = ["outputCoordinates", "outputCoordinates_discarded"]
        union = self.newProtocol(ProtUnionSet)
        for name in outputs:
            union.inputSets.append(pwobj.Pointer(prune, extended=name))
        merged = self.launchProtocol(union).outputSet
        self.assertEqual(merged.getSize(), len(picker))
        pruner = {c.getObjId(): getattr(c, PARTICLE_SCORE_ATTR).get()
                  for name in outputs for c in getattr(prune, name)}
        for coord in merged:
            self.assertEqual((getattr(coord, SCORE_ATTR).get(),
                              getattr(coord, CLASS_ATTR).get()), picker[coord.getObjId()])
            self.assertEqual(getattr(coord, PARTICLE_SCORE_ATTR).get(),
                             pruner[coord.getObjId()])

    def assertWindowsCutByJobs(self, prot):
        """The windows come from `cryoprune extract` jobs, none cut in the
        Scipion process (the stdout log lists each job's command)."""
        with open(os.path.join(self.proj.getPath(), prot.getStdoutLog())) as f:
            log = f.read()
        self.assertIn("cryoprune_scipion.cli extract --micrographs", log)

    def importParticles(self, coordSet):
        """Windows of the picks, in id order, imported as particles."""
        from cryoprune_scipion.engine.io import read_micrograph
        windows = []
        for coord in coordSet.iterItems(orderBy="id"):
            mic = self.mics[coord.getMicId()]
            windows.append(extract_windows(read_micrograph(mic.getFileName()),
                                           [(coord.getX(), coord.getY())], BOX_SIZE)[0][0])
        path = self.getOutputPath("picks.mrcs")
        write_stack(path, np.stack(windows), PIXEL_SIZE)
        prot = self.newProtocol(ProtImportParticles,
                                importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                                filesPath=os.path.dirname(path), filesPattern="picks.mrcs",
                                samplingRate=PIXEL_SIZE, voltage=300,
                                sphericalAberration=2.7, amplitudeContrast=0.1)
        return self.launchProtocol(prot).outputParticles

    def test_pruning_form_takes_box_and_downsampling_from_the_model(self):
        weights = self.getOutputPath("pruner", "model.pt")
        os.makedirs(os.path.dirname(weights), exist_ok=True)
        open(weights, "w").close()
        model = CryoPrunePrunerModel(filename=weights)
        model.setBoxSize(BOX_SIZE)
        model.setDownFactor(DOWN_FACTOR)
        model.setWindowSize(32)
        picks, _ = self.importCoordinates(TEST[:1], ["particle"], "other box")
        coords = picks.outputCoordinates
        coords.setBoxSize(64)  # the picker's box: not the pruner's
        prune = self.newProtocol(CryoPruneProtPickerOptimizer)
        prune.inputSet.set(coords)
        prune.inputModel.set(model)
        self.assertEqual(prune.validate(), [])
        self.assertEqual((prune._getWindowBox(coords), prune._getDownFactor()),
                         (BOX_SIZE, DOWN_FACTOR))
        self.assertEqual(CryoPruneBoxSizeWizard.getBoxSize(prune), BOX_SIZE)
        prune.downFactor.set(1.0)
        errors = " ".join(prune.validate())
        self.assertIn("windows would be 48 px", errors)
        self.assertIn("trained on 32 px windows (box 48 px downsampled by 1.5)", errors)

    def test_validation_names_the_problem(self):
        picks, _ = self.importCoordinates(TEST[:1], ["particle"], "few")
        training = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                    inputGood=picks.outputCoordinates,
                                    initialWeights=1, backbone=0)
        training.inputBad.append(pwobj.Pointer(picks, extended="outputCoordinates"))
        errors = " ".join(training.validate())
        self.assertIn("scipion3 installb cryoprune-models", errors)

    def test_base_pruner_only_when_chosen(self):
        """Automatic starts from scratch without ImageNet weights (measured
        best); the base pruner is made only when chosen."""
        picks, _ = self.importCoordinates(TEST[:1], ["particle"], "base")
        for initial, basePruner in ((INIT_AUTOMATIC, False), (INIT_BASE, True)):
            training = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                        inputGood=picks.outputCoordinates,
                                        initialWeights=initial)
            training.inputBad.append(pwobj.Pointer(picks, extended="outputCoordinates"))
            training._insertAllSteps()
            steps = [step.funcName.get() for step in training._steps]
            self.assertEqual("basePrunerStep" in steps, basePruner)
            weights = training._getInitialWeightsFile()
            self.assertEqual(weights is not None and "base-pruner" in weights, basePruner)

    def test_second_round_takes_junk_from_the_discarded_picks(self):
        """A second round in a few clicks: the good examples, coordinates of
        one junk class picked by hand and the discarded output of a pruning
        train a new pruner whose junk classes are the first model's, each
        with the discarded items the first model put in it (edge boxes and
        items called particle left out), plus the hand-picked ones."""
        model = self.train().outputModel
        picks, _ = self.importCoordinates(TRAIN + TEST, ["particle", "ice", "background",
                                                         "edge"], "picks")
        prune = self.newProtocol(CryoPruneProtPickerOptimizer, inputSet=picks.outputCoordinates,
                                 inputModel=model, useGpu=False, numberOfThreads=2)
        self.launchProtocol(prune)
        discarded = {}  # predicted class -> items
        for coord in prune.outputCoordinates_discarded:
            label = getattr(coord, JUNK_CLASS_ATTR).get()
            discarded[label] = discarded.get(label, 0) + 1
        self.assertEqual(discarded[EDGE_CLASS], len(TRAIN + TEST))
        handPicked, _ = self.importCoordinates(TRAIN, ["more background"], "background")

        good, _ = self.importCoordinates(TRAIN, ["particle"], "good")
        second = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                  inputGood=good.outputCoordinates, downFactor=DOWN_FACTOR,
                                  initialWeights=0, inputSize=32, epochs=1, batchSize=16,
                                  useGpu=False, numberOfThreads=2)
        second.inputBad.append(pwobj.Pointer(handPicked, extended="outputCoordinates"))
        second.inputBad.append(pwobj.Pointer(prune, extended="outputCoordinates_discarded"))
        self.launchProtocol(second)
        junk = ["background"] + sorted(set(discarded) - {"background", "particle", EDGE_CLASS})
        self.assertEqual(second.outputModel.getClassNames(), ["particle"] + junk)
        nHandPicked = handPicked.outputCoordinates.getSize()
        windows = second._readClassWindows()
        self.assertEqual(list(windows), ["particle"] + junk)
        for name in junk:
            expected = discarded.get(name, 0) + (nHandPicked if name == "background" else 0)
            self.assertEqual(sum(count for _, count in windows[name]), expected, name)
        self.assertEqual(windows["background"][0],
                         ["outputCoordinates of 'background'", nHandPicked])
        metadata = second.outputModel.getMetadata()
        self.assertEqual(sum(metadata["n_train"]) + metadata["validation"]["n"],
                         sum(count for sources in windows.values() for _, count in sources))
        self.assertIn("background: %d windows: %d from outputCoordinates of 'background'"
                      % (sum(count for _, count in windows["background"]), nHandPicked),
                      "\n".join(second.summary()))

        again = self.newProtocol(CryoPruneProtPickerOptimizer, inputSet=picks.outputCoordinates,
                                 inputModel=second.outputModel, useGpu=False,
                                 numberOfThreads=2)
        self.launchProtocol(again)
        self.assertEqual(again.outputCoordinates.getSize()
                         + again.outputCoordinates_discarded.getSize(),
                         picks.outputCoordinates.getSize())

    def test_pruned_set_is_split_by_class_in_the_form(self):
        """A set whose items carry the pruning's class (here made up, as a
        subset of a discarded output would carry it) is named by its classes
        in the form: the junk names count the other sets only, and a class
        too small after the split is named with its set."""
        def predicted(coord):
            label = "carbon" if coord.getX() % 13 == 0 else "ice"
            return {JUNK_CLASS_ATTR: pwobj.String(EDGE_CLASS if crossesEdge(coord) else label)}
        pruned, _ = self.importCoordinates(TRAIN, ["particle", "ice", "background", "edge"],
                                           "pruned", predicted)
        labels = [getattr(c, JUNK_CLASS_ATTR).get() for c in pruned.outputCoordinates]
        self.assertTrue(0 < labels.count("carbon") < MIN_CLASS_EXAMPLES)
        self.assertEqual(labels.count(EDGE_CLASS), len(TRAIN))
        good, _ = self.importCoordinates(TRAIN, ["particle"], "good")
        ice, _ = self.importCoordinates(TRAIN, ["ice"], "ice picks")
        training = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                    inputGood=good.outputCoordinates, junkNames="ice",
                                    initialWeights=0)
        training.inputBad.append(pwobj.Pointer(pruned, extended="outputCoordinates"))
        training.inputBad.append(pwobj.Pointer(ice, extended="outputCoordinates"))
        self.assertEqual(training._getClassSources(),
                         {"particle": [(0, None)], "carbon": [(1, "carbon")],
                          "ice": [(1, "ice"), (2, None)]})
        errors = " ".join(training.validate())
        self.assertIn("carbon (outputCoordinates of 'pruned') has %d examples: each class "
                      "needs at least" % labels.count("carbon"), errors)
        training.junkNames.set("ice,carbon")
        self.assertIn("2 junk class names (ice,carbon) for 1 bad sets not split by "
                      "predicted class", " ".join(training.validate()))
        # Not split: one class per set, named in the form like any other.
        training.splitPruned.set(False)
        self.assertEqual(training._getClassSources(),
                         {"particle": [(0, None)], "ice": [(1, None)],
                          "carbon": [(2, None)]})
