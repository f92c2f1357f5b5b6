"""The chain workflow template run end to end on a few small simulated
micrographs: its protocols are loaded into a test project, set as a user
would set their forms for a quick trial, and run in order."""
import os

import numpy as np
import pwem
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.objects import SetOfCoordinates
from pwem.protocols import ProtImportCoordinates

from cryoprune_scipion.constants import (CLASS_ATTR, EDGE_CLASS, JUNK_CLASS_ATTR,
                                         PARTICLE_SCORE_ATTR, SCORE_ATTR)
from cryoprune_scipion.engine.coordinates import DUPLICATE_RADIUS
from cryoprune_scipion.engine.io import write_micrograph
from cryoprune_scipion.engine.simulate import simulate_micrograph
from cryoprune_scipion.protocols.protocol_pruner_training import INIT_SCRATCH
from coordinate_import import new_coordinates

SHAPE = (320, 384)          # rows, columns
PIXEL_SIZE = 5.0            # A/px: the barrel is about 30 px across
BOX_SIZE = 40
PRUNER_DOWN_FACTOR = 1.25   # 32 px pruner windows
NAMES = ["sim_%d" % i for i in range(4)]
ANNOTATED = NAMES[:3]       # 4 ice blobs each: 12 junk picks, at least the 10 needed
CLASSES = 2
EPOCHS = 20                 # YOLO from scratch starts finding particles after ~10


class TestChainRun(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.micsFolder = cls.getOutputPath("micrographs")
        os.makedirs(cls.micsFolder)
        cls.truth = {}  # micrograph -> kind -> [(x, y)]
        for i, name in enumerate(NAMES):
            micrograph = simulate_micrograph(SHAPE, n_particles=10, pixel_size=PIXEL_SIZE,
                                             snr=3.0, junk=("ice",) * 4, seed=20 + i)
            write_micrograph(os.path.join(cls.micsFolder, name + ".mrc"), micrograph.image,
                             PIXEL_SIZE)
            cls.truth[name] = {
                view: [(p["x"], p["y"]) for p in micrograph.particles if p["view"] == view]
                for view in ("top", "side")}
            cls.truth[name]["junk"] = [(j["x"], j["y"]) for j in micrograph.junk]

    def loadChain(self):
        """The chain template's protocols in the project, by template id,
        with the values of the template's own parameters."""
        plugin = pwem.Domain.getPlugin("cryoprune_scipion")
        template = {t.name: t for t in plugin.Plugin().getTemplates()}["cryoprune_chain"]
        template.replaceEnvVariables()
        template.parseContent()
        for alias, value in {"micspath": self.micsFolder, "micspattern": "sim_*.mrc",
                             "sr": PIXEL_SIZE, "topbox": BOX_SIZE, "sidebox": BOX_SIZE,
                             "junkbox": BOX_SIZE, "epochs": EPOCHS,
                             "threshold": 0.01,  # a briefly trained picker is unsure
                             "downfactor": PRUNER_DOWN_FACTOR, "prunethreshold": 0.5,
                             "classes": CLASSES}.items():
            template.setParamValue(alias, str(value))
        protocols = self.proj.loadProtocols(template.createTemplateFile())
        return {int(key): protocol for key, protocol in protocols.items()}

    def writeCoordinates(self, mics, kind):
        """A Scipion sqlite SetOfCoordinates of the `kind` centres on the
        annotated micrographs, as the import reads it."""
        path = self.getOutputPath("%s.sqlite" % kind)
        coordSet = SetOfCoordinates(filename=path)
        coordSet.setBoxSize(BOX_SIZE)
        for mic in mics:
            stem = os.path.splitext(mic.getMicName())[0]
            if stem in ANNOTATED:
                for coord in new_coordinates(mic, self.truth[stem][kind]):
                    coordSet.append(coord)
        coordSet.write()
        coordSet.close()
        return path

    def test_chain_runs_from_micrographs_to_2d_classes(self):
        byId = self.loadChain()
        (mics, top, side, junk, training, picking, union, prunerTraining, pruning,
         extraction, classify) = [byId[i] for i in range(2, 13)]
        self.launchProtocol(mics)
        self.assertEqual(mics.outputMicrographs.getSize(), len(NAMES))

        # The annotations in a format pwem imports without other plugins.
        for importProt, kind in ((top, "top"), (side, "side"), (junk, "junk")):
            importProt.importFrom.set(ProtImportCoordinates.IMPORT_FROM_SCIPION)
            importProt.filesPath.set(self.writeCoordinates(mics.outputMicrographs, kind))
            self.launchProtocol(importProt)
            self.assertEqual(importProt.outputCoordinates.getSize(),
                             sum(len(self.truth[name][kind]) for name in ANNOTATED))

        # Quick trial budgets; Use GPU stays on: the jobs fall back to the CPU.
        training.setAttributesFromDict(dict(numberOfThreads=2, patience=EPOCHS,
                                            valFraction=0.0, workingSize=SHAPE[1],
                                            tileSize=160), setBasic=False)
        self.launchProtocol(training)
        self.launchProtocol(picking)
        picks = picking.outputCoordinates
        self.assertGreater(picks.getSize(), 0)
        picker = {c.getObjId(): (getattr(c, SCORE_ATTR).get(), getattr(c, CLASS_ATTR).get())
                  for c in picks}
        self.assertTrue(all(cls in ("top", "side") for _, cls in picker.values()))

        self.launchProtocol(union)
        prunerTraining.setAttributesFromDict(dict(initialWeights=INIT_SCRATCH, inputSize=32,
                                                  epochs=1, batchSize=16, valFraction=0.0,
                                                  numberOfThreads=2), setBasic=False)
        self.launchProtocol(prunerTraining)
        self.launchProtocol(pruning)
        kept, discarded = pruning.outputCoordinates, pruning.outputCoordinates_discarded
        keptIds = {c.getObjId() for c in kept}
        discardedIds = {c.getObjId() for c in discarded}
        self.assertFalse(keptIds & discardedIds)
        self.assertEqual(keptIds | discardedIds, set(picker))
        for coord in kept:
            self.assertEqual((getattr(coord, SCORE_ATTR).get(),
                              getattr(coord, CLASS_ATTR).get()), picker[coord.getObjId()])
            self.assertGreaterEqual(getattr(coord, PARTICLE_SCORE_ATTR).get(), 0.5)
            self.assertIn(getattr(coord, JUNK_CLASS_ATTR).get(), ("particle", "junk"))
        # Boxes crossing the micrograph edge, and only those, are discarded
        # unscored; repeated picks (a top and a side box on one particle) are
        # scored like their twin.
        for coord in discarded:
            self.assertEqual(getattr(coord, JUNK_CLASS_ATTR).get() == EDGE_CLASS,
                             self.crossesEdge(coord))
        self.assertGreater(len(keptIds), 0, "the pruner kept nothing: no particles to "
                                            "extract and classify")

        self.launchProtocol(extraction)
        particles = extraction.outputParticles
        inside = self.firstOfRepeats([c.clone() for c in kept.iterItems(orderBy="id")
                                      if not self.crossesEdge(c)])
        self.assertEqual(particles.getSize(), len(inside))
        self.assertEqual(particles.getXDim(), BOX_SIZE)
        self.assertAlmostEqual(particles.getSamplingRate(), PIXEL_SIZE)
        # Each particle carries the picker's and the pruner's attributes of its pick.
        scores = {(c.getMicId(), c.getX(), c.getY()): picker[c.getObjId()] + (
            getattr(c, PARTICLE_SCORE_ATTR).get(),) for c in inside}
        for particle in particles:
            coord = particle.getCoordinate()
            self.assertEqual((getattr(particle, SCORE_ATTR).get(),
                              getattr(particle, CLASS_ATTR).get(),
                              getattr(particle, PARTICLE_SCORE_ATTR).get()),
                             scores.pop((particle.getMicId(), coord.getX(), coord.getY())))
        self.assertEqual(scores, {})

        classify.setAttributesFromDict(dict(epochs=1, batchSize=8, workingSize=32,
                                            alignIterations=1, refinePasses=1,
                                            phaseFlip=False), setBasic=False)
        self.launchProtocol(classify)
        classes = classify.outputClasses
        self.assertEqual(classes.getSize(), CLASSES)
        self.assertEqual(sum(c.getSize() for c in classes), particles.getSize())

    @staticmethod
    def firstOfRepeats(coords):
        """The coordinates that extraction keeps: the first of those within
        DUPLICATE_RADIUS of each other on a micrograph."""
        first = []
        for coord in coords:
            if not any(c.getMicId() == coord.getMicId() and np.hypot(
                    c.getX() - coord.getX(), c.getY() - coord.getY()) <= DUPLICATE_RADIUS
                       for c in first):
                first.append(coord)
        return first

    @staticmethod
    def crossesEdge(coord):
        """Whether the coordinate's box reaches past its micrograph (centre
        pixel box // 2)."""
        left, top = coord.getX() - BOX_SIZE // 2, coord.getY() - BOX_SIZE // 2
        return (left < 0 or top < 0 or left + BOX_SIZE > SHAPE[1]
                or top + BOX_SIZE > SHAPE[0])
