"""Headless Scipion tests of streamed input: picking a set of micrographs
and pruning a set of coordinates that grow in pieces while the protocol
runs, and close later.

The test plays the streaming producer: it reopens the set file of an
import, appends items and sets the stream state, as a protocol that makes
a set in streaming writes it. Each protocol runs in its own process, in
the background, and the test adds the next piece only once the protocol has
worked on the earlier ones."""
import os
import time

import pyworkflow.object as pwobj
from pyworkflow.object import Set
from pyworkflow.protocol import getProtocolFromDb
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.objects import SetOfCoordinates, SetOfMicrographs
from pwem.protocols import ProtImportMicrographs

from cryoprune_scipion.constants import PARTICLE_SCORE_ATTR
from cryoprune_scipion.convert import coordinatesPath
from cryoprune_scipion.engine.io import read_coordinates, write_micrograph
from cryoprune_scipion.engine.simulate import simulate_micrograph
from cryoprune_scipion.protocols import (CryoPruneProtPickerOptimizer,
                                         CryoPruneProtPickerOptimizerTraining,
                                         CryoPruneProtYoloPicking, CryoPruneProtYoloTraining)
from cryoprune_scipion.protocols.protocol_pruner_training import INIT_SCRATCH
from coordinate_import import import_coordinates, new_coordinates

SHAPE = (256, 320)          # rows, columns
PIXEL_SIZE = 4.0            # A/px: the barrel is about 37 px across
BOX_SIZE = 48
DOWN_FACTOR = 1.5           # 32 px pruner windows
NAMES = ["sim_%d" % i for i in range(5)]
WAIT = 150                  # seconds for one piece to be processed
CHUNK = 10                  # pruning chunk: the last two pieces take two each


class TestStreaming(BaseTest):
    """A picker and a pruner trained for an epoch (their results do not
    matter here, only that every streamed item is processed once)."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("simulated")
        os.makedirs(folder)
        cls.truth = {}
        for i, name in enumerate(NAMES):
            micrograph = simulate_micrograph(SHAPE, n_particles=6, pixel_size=PIXEL_SIZE,
                                             snr=3.0, junk=("ice",) * 3, seed=i)
            write_micrograph(os.path.join(folder, name + ".mrc"), micrograph.image,
                             PIXEL_SIZE)
            cls.truth[name] = {"particle": [(p["x"], p["y"]) for p in micrograph.particles],
                               "ice": [(j["x"], j["y"]) for j in micrograph.junk]}
        cls.mics = cls.importMicrographs("sim_*.mrc").outputMicrographs
        particles = cls.importCoordinates(NAMES, ["particle"], "particles")
        ice = cls.importCoordinates(NAMES, ["ice"], "ice")
        picker = cls.newProtocol(CryoPruneProtYoloTraining, inputMicrographs=cls.mics,
                                 classNames="particle", useGpu=False, numberOfThreads=1,
                                 epochs=1, patience=1, batchSize=4, valFraction=0.0,
                                 workingSize=SHAPE[1], tileSize=160)
        picker.inputCoordinates.append(pwobj.Pointer(particles, extended="outputCoordinates"))
        cls.picker = cls.launchProtocol(picker).outputModel
        pruner = cls.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                 inputGood=particles.outputCoordinates, junkNames="ice",
                                 downFactor=DOWN_FACTOR, initialWeights=INIT_SCRATCH,
                                 inputSize=32, epochs=1, batchSize=16, valFraction=0.0,
                                 useGpu=False, numberOfThreads=1)
        pruner.inputBad.append(pwobj.Pointer(ice, extended="outputCoordinates"))
        cls.pruner = cls.launchProtocol(pruner).outputModel

    @classmethod
    def importMicrographs(cls, pattern):
        prot = cls.newProtocol(ProtImportMicrographs,
                               filesPath=cls.getOutputPath("simulated"),
                               filesPattern=pattern, samplingRate=PIXEL_SIZE, voltage=300,
                               sphericalAberration=2.7, amplitudeContrast=0.1)
        return cls.launchProtocol(prot)

    @classmethod
    def centresOf(cls, names, kinds):
        """(x, y) of `kinds` on a micrograph, when it is one of the named ones."""
        def centres(mic):
            stem = os.path.splitext(mic.getMicName())[0]
            return [centre for kind in kinds for centre in cls.truth[stem][kind]
                    ] if stem in names else []
        return centres

    @classmethod
    def coordinates(cls, names, kinds):
        """Coordinates of the named micrographs, not yet in any set."""
        centres = cls.centresOf(names, kinds)
        return [coord for mic in cls.mics for coord in new_coordinates(mic, centres(mic))]

    @classmethod
    def importCoordinates(cls, names, kinds, label):
        return import_coordinates(cls, cls.mics, cls.centresOf(names, kinds), BOX_SIZE, label)

    # --------------------------- streaming helpers ---------------------------
    @staticmethod
    def stream(outputSet, items=(), close=False):
        """Appends `items` to the file of `outputSet` and leaves the stream
        open, or closes it; returns the ids the items got."""
        streamed = outputSet.getClass()(filename=outputSet.getFileName())
        streamed.loadAllProperties()
        streamed.enableAppend()
        nextId = max([0] + [item.getObjId() for item in streamed.iterItems(
            orderBy="id", direction="DESC", limit=1)]) + 1
        for objId, item in enumerate(items, nextId):
            item.setObjId(objId)
            streamed.append(item)
        streamed.setStreamState(Set.STREAM_CLOSED if close else Set.STREAM_OPEN)
        streamed.write()
        streamed.close()
        return {item.getObjId() for item in items}

    def launchInBackground(self, prot):
        self.proj.launchProtocol(prot)
        self.addCleanup(self.stopIfRunning, prot)

    def stopIfRunning(self, prot):
        """Ends a run that a failed test left waiting for more input."""
        self.proj._updateProtocol(prot)
        if prot.isActive():
            self.proj.stopProtocol(prot)

    def waitFor(self, prot, condition, what):
        """The protocol as its run stores it, once `condition(prot)` holds."""
        deadline = time.time() + WAIT
        while True:
            current = getProtocolFromDb(self.proj.path, prot.getDbPath(), prot.getObjId())
            try:
                if condition(current):
                    return current
                if current.isFailed() or current.isFinished():
                    self.fail("%s ended waiting for %s:\n%s"
                              % (prot.getRunName(), what, self.log(prot)[-3000:]))
            finally:
                current.getProject().closeMapper()
                current.closeMappers()
            self.assertLess(time.time(), deadline, "timed out waiting for %s" % what)
            time.sleep(1)

    def waitToFinish(self, prot):
        self.waitFor(prot, lambda p: p.isFinished(), "the end of the run")
        self.proj._updateProtocol(prot)
        return prot

    def log(self, prot):
        with open(os.path.join(self.proj.getPath(), prot.getStdoutLog())) as f:
            return f.read()

    @staticmethod
    def isClosed(outputSet):
        """Whether the set's file says closed, as a protocol that follows it
        reads it."""
        stored = outputSet.getClass()(filename=outputSet.getFileName())
        stored.loadAllProperties()
        closed = stored.isStreamClosed()
        stored.close()
        return closed

    @staticmethod
    def read(outputSet):
        """Copies of the items in the set's file, read through and closed: a
        read left open would keep the producer from writing the file."""
        stored = outputSet.getClass()(filename=outputSet.getFileName())
        items = [item.clone() for item in stored]
        stored.close()
        return items

    def itemsIn(self, prot, outputName):
        outputSet = getattr(prot, outputName, None)
        return [] if outputSet is None else self.read(outputSet)

    # --------------------------- tests ---------------------------------------
    def test_picking_follows_a_micrograph_stream(self):
        """Micrographs arrive in three pieces; the last one, smaller than a
        batch, is picked when the stream closes with nothing new."""
        firstMics = self.importMicrographs("sim_[01].mrc").outputMicrographs
        self.stream(firstMics)
        expected = {mic.getObjId() for mic in self.read(firstMics)}
        picking = self.newProtocol(CryoPruneProtYoloPicking, inputMicrographs=firstMics,
                                   inputModel=self.picker, useGpu=False, threshold=0.0,
                                   maxDetections=5, numberOfThreads=1, streamingBatchSize=2)
        self.launchInBackground(picking)

        def micrographsPicked(prot):
            return {coord.getMicId() for coord in self.itemsIn(prot, "outputCoordinates")}

        template = self.read(firstMics)[0]

        def newMicrographs(names):
            mics = []
            for name in names:
                mic = template.clone()
                mic.setLocation(self.getOutputPath("simulated", name + ".mrc"))
                mic.setMicName(name + ".mrc")
                mics.append(mic)
            return mics

        self.waitFor(picking, lambda p: micrographsPicked(p) == expected, "the first piece")
        expected |= self.stream(firstMics, newMicrographs(NAMES[2:4]))
        self.waitFor(picking, lambda p: micrographsPicked(p) == expected, "the second piece")
        expected |= self.stream(firstMics, newMicrographs(NAMES[4:]))
        time.sleep(3)  # time to see it, and to wait for a second one to make a batch
        self.stream(firstMics, close=True)
        picking = self.waitToFinish(picking)

        allCoords = picking.outputCoordinates
        self.assertTrue(self.isClosed(allCoords))
        self.assertTrue(self.isClosed(picking.outputCoordinates_particle))
        self.assertEqual(picking.outputCoordinates_particle.getSize(), allCoords.getSize())
        mics = SetOfMicrographs(filename=firstMics.getFileName())
        self.assertEqual({mic.getObjId() for mic in mics}, expected)
        log = self.log(picking)
        for mic in mics:
            # Picked once, and its picks read once into the output.
            self.assertEqual(log.count("Picking micrograph: %s " % mic.getFileName()), 1,
                             mic.getFileName())
            picks = read_coordinates(coordinatesPath(picking.getCoordsDir(), mic.getObjId()))
            self.assertTrue(picks, mic.getFileName())
            self.assertEqual(len(list(allCoords.iterCoordinates(mic))), len(picks),
                             mic.getFileName())
        mics.close()

    def test_pruning_follows_a_coordinate_stream(self):
        """Coordinates arrive in three pieces, the last with the stream's
        closing; chunks are smaller than the pieces."""
        picks = self.importCoordinates(NAMES[:1], ["particle", "ice"], "streamed picks")
        inputSet = picks.outputCoordinates
        self.stream(inputSet)
        # One copy: this one-epoch pruner's scores then fall on both sides of
        # the threshold (averaged over 4 copies, all of them above it)
        prune = self.newProtocol(CryoPruneProtPickerOptimizer, inputSet=inputSet,
                                 inputModel=self.pruner, downFactor=DOWN_FACTOR,
                                 threshold=0.5, chunkSize=CHUNK, streamingSleep=1,
                                 testTimeAugmentation=0, useGpu=False, numberOfThreads=1)
        self.launchInBackground(prune)

        def scored(prot):
            return len(self.itemsIn(prot, "outputCoordinates")
                       + self.itemsIn(prot, "outputCoordinates_discarded"))

        inputSize = inputSet.getSize()
        self.waitFor(prune, lambda p: scored(p) == inputSize, "the first piece")
        secondPiece = self.coordinates(NAMES[1:3], ["particle", "ice"])
        self.stream(inputSet, secondPiece)
        inputSize += len(secondPiece)
        self.waitFor(prune, lambda p: scored(p) == inputSize, "the second piece")
        lastPiece = self.coordinates(NAMES[3:], ["particle", "ice"])
        self.stream(inputSet, lastPiece, close=True)
        inputSize += len(lastPiece)
        prune = self.waitToFinish(prune)

        kept, discarded = prune.outputCoordinates, prune.outputCoordinates_discarded
        # pyworkflow keeps no properties, the stream state among them, in the
        # file of an empty set
        self.assertTrue(kept.getSize() and discarded.getSize(),
                        "both outputs must hold picks: %d kept, %d discarded"
                        % (kept.getSize(), discarded.getSize()))
        self.assertTrue(self.isClosed(kept))
        self.assertTrue(self.isClosed(discarded))
        streamed = SetOfCoordinates(filename=inputSet.getFileName())
        inputIds = [coord.getObjId() for coord in streamed]
        streamed.close()
        self.assertEqual(len(inputIds), inputSize)
        keptIds = [coord.getObjId() for coord in kept]
        discardedIds = [coord.getObjId() for coord in discarded]
        self.assertEqual(len(keptIds) + len(discardedIds), inputSize)
        self.assertEqual(sorted(keptIds + discardedIds), sorted(inputIds))
        for outputSet, isKept in ((kept, True), (discarded, False)):
            for coord in outputSet:
                self.assertEqual(getattr(coord, PARTICLE_SCORE_ATTR).get() >= 0.5, isKept)
        # Scored once: the chunk counts in the log add up to the input.
        counts = [int(line.split(" items scored")[0].split()[-1])
                  for line in self.log(prune).splitlines() if " items scored" in line]
        self.assertEqual(sum(counts), inputSize)
        self.assertTrue(all(0 < count <= CHUNK for count in counts), counts)
