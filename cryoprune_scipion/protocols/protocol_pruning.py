"""Pruning of picked particles with a trained PickerOptimizer classifier;
works chunk by chunk on large and on streamed input."""
import os
import time

import numpy as np

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pyworkflow import BETA
from pyworkflow.object import Set
from pwem.objects import Coordinate, SetOfCoordinates, SetOfParticles
from pwem.protocols import EMProtocol

from ..constants import EDGE_CLASS, JUNK_CLASS_ATTR
from ..engine.coordinates import DUPLICATE_RADIUS
from ..engine.pruning import TTA
from ..convert import readPruningScores, setPruningAttributes
from .base import CryoPruneProtocol, reference
from .protocol_pruner_training import windowBox, writeWindowInput

DISCARDED = "_discarded"
PARTICLE_THRESHOLD = 0.5  # the form's start, also where the training viewer draws its cut


def repeatScores(items, scored):
    """{id: (score, label)} of the unscored coordinates among `items` that
    repeat a scored one (within DUPLICATE_RADIUS on the same micrograph, as
    a top and a side box on one particle): `cryoprune extract` cuts each
    position once, so a repeat is scored like its twin."""
    byMicrograph = {}
    for item in items:
        if item.getObjId() in scored and isinstance(item, Coordinate):
            byMicrograph.setdefault(item.getMicId(), []).append(item)
    repeats = {}
    for item in items:
        twins = byMicrograph.get(item.getMicId()) if isinstance(item, Coordinate) else None
        if item.getObjId() in scored or not twins:
            continue
        distances = np.hypot([t.getX() - item.getX() for t in twins],
                             [t.getY() - item.getY() for t in twins])
        if distances.min() <= DUPLICATE_RADIUS:
            repeats[item.getObjId()] = scored[twins[int(distances.argmin())].getObjId()]
    return repeats


class CryoPruneProtPickerOptimizer(CryoPruneProtocol, EMProtocol):
    """Prunes false picks (ice, carbon, aggregates, background, off-centre
    picks) from a SetOfCoordinates or a SetOfParticles with a classifier
    trained by the PickerOptimizer training protocol. Every item gets the
    probability of being a particle (`_cryopruneParticleScore`) and its
    predicted class (`_cryopruneJunkClass`: particle or a junk class) and
    keeps the picker's confidence and view class (`_cryopruneScore`,
    `_cryopruneClass`); items scoring at least the threshold go to
    the kept set, the others to the `..._discarded` set. Windows are cut
    from the micrographs by a `cryoprune extract` job; a coordinate whose
    box crosses the micrograph edge cannot be a whole particle: it is
    discarded with score 0 and class `edge`. The input is processed chunk
    by chunk, so any number of particles and streamed input work. To cut
    particles from the kept coordinates, follow with the extract particles
    protocol."""
    _label = "picker optimizer pruning"
    _devStatus = BETA
    _possibleOutputs = {"outputCoordinates": SetOfCoordinates,
                        "outputCoordinates" + DISCARDED: SetOfCoordinates,
                        "outputParticles": SetOfParticles,
                        "outputParticles" + DISCARDED: SetOfParticles}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSet", params.PointerParam,
                      pointerClass="SetOfCoordinates,SetOfParticles", important=True,
                      label="Picks to prune",
                      help="A SetOfCoordinates, e.g. the picker's output (windows "
                           "are cut from its micrographs), or a SetOfParticles; "
                           "streamed sets are followed until they close.")
        form.addParam("inputModel", params.PointerParam, pointerClass="CryoPrunePrunerModel",
                      important=True, label="Pruner model",
                      help="Output of the PickerOptimizer training protocol; it "
                           "brings its box size, downsampling and junk classes.")
        form.addParam("boxSize", params.IntParam, allowsNull=True,
                      label="Box size (px)",
                      help="Window cut around each coordinate, in micrograph pixels. "
                           "Empty (the start): the box size the pruner model was "
                           "trained with, so the windows match its training; for old "
                           "models without one, the coordinates' box size. Particles "
                           "keep their own size.")
        form.addParam("downFactor", params.FloatParam, allowsNull=True,
                      label="Downsampling factor",
                      help="Fourier downsampling of the windows. Empty (the start): "
                           "the factor the pruner model was trained with. Box size "
                           "and factor must give the model's window size.")
        form.addParam("threshold", params.FloatParam, default=PARTICLE_THRESHOLD,
                      validators=[params.Range(0.0, 1.0)], label="Particle threshold",
                      help="Keep items whose probability of being a particle is at "
                           "least this; 0.5 to start, higher for a cleaner set. The "
                           "wizard shows the model's validation windows by true class "
                           "and the precision and recall of the cut as it moves. Every "
                           "item keeps its score, so a stricter cut can be made later "
                           "with a subset.")
        self._defineTtaParam(
            form, TTA,
            help="Score also mirrored and turned copies of each window and give it "
                 "the mean of their probabilities, at one network pass per copy. On "
                 "real beta-galactosidase windows, 4 copies (the start) raised F1 by "
                 "0.019 with 50 examples per class and the ROC AUC at every shot "
                 "count; 8 add nothing more. The training's validation figures, "
                 "which the threshold wizard shows, are scored with %d copies." % TTA)
        form.addParam("chunkSize", params.IntParam, default=20000,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Items per chunk",
                      help="Items classified per job; bounds the memory used. "
                           "20,000 to start.")
        form.addParam("streamingSleep", params.IntParam, default=30,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Wait for streamed input (s)",
                      help="While the input stream is open, look for new items this "
                           "often.")
        self._defineComputeParams(form, "pruning", threads=2)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.pruneStep)
        self._insertFunctionStep(self.closeOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def pruneStep(self):
        """Classify the input chunk by chunk, following an open stream until
        it closes. A continued run resumes after the last item already in
        the outputs."""
        lastId = self._lastProcessedId()
        while True:
            inputSet = self._loadInput()
            closed = inputSet.isStreamClosed()
            while True:
                items = [item.clone() for item in inputSet.iterItems(
                    orderBy="id", where="id > %d" % lastId, limit=self.chunkSize.get())]
                if not items:
                    break
                self._pruneChunk(inputSet, items)
                lastId = items[-1].getObjId()
            if closed:
                break
            time.sleep(self.streamingSleep.get())

    def _pruneChunk(self, inputSet, items):
        """Score one chunk: its windows cut (or its particle stacks linked)
        into the extra folder, then one `cryoprune prune` job."""
        windowsDir, scores = self._getExtraPath("windows"), self._getExtraPath("scores.csv")
        for path in (windowsDir, self._getExtraPath("input"), scores):
            pwutils.cleanPath(path)
        ids = writeWindowInput(self, inputSet, items, windowsDir, self._getExtraPath("input"),
                               self._getWindowBox(inputSet))
        scored = {}
        if ids:
            self.runCryoprune("prune", "--model %s --particles %s --downsample %s --tta %d "
                              "--out %s" % (os.path.abspath(self.inputModel.get().getFileName()),
                                            windowsDir, self._getDownFactor(),
                                            self.getTtaCopies(), scores))
            scored = dict(zip(ids, readPruningScores(scores)))
            scored.update(repeatScores(items, scored))
        if len(scored) < len(items):
            self.info("%d boxes cross the micrograph edge: discarded as '%s'"
                      % (len(items) - len(scored), EDGE_CLASS))
        kept, discarded = self._getOutputSets(inputSet)
        threshold = self.threshold.get()
        for item in items:
            score, label = scored.get(item.getObjId(), (0.0, EDGE_CLASS))
            setPruningAttributes(item, score, label)
            isKept = item.getObjId() in scored and score >= threshold  # threshold 0 too
            (kept if isKept else discarded).append(item)
        for outputSet in (kept, discarded):
            outputSet.write()
            self._store(outputSet)
        self.info("%d items scored (%d kept in all, %d discarded)"
                  % (len(items), kept.getSize(), discarded.getSize()))

    def closeOutputStep(self):
        inputSet = self._loadInput()
        for outputSet in self._getOutputSets(inputSet):
            outputSet.setStreamState(Set.STREAM_CLOSED)
            outputSet.write()
            self._store(outputSet)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        inputSet, model = self.inputSet.get(), self.inputModel.get()
        if inputSet is None or model is None:
            return []  # pyworkflow reports the missing inputs
        errors = []
        if not os.path.isfile(model.getFileName()):
            errors.append("The pruner model file %s is missing: run its training again"
                          % model.getFileName())
        if inputSet.getSize() == 0 and inputSet.isStreamClosed():
            errors.append("%s is empty: nothing to prune" % self.getObjectTag("inputSet"))
        factor = self._getDownFactor()
        if factor < 1:
            errors.append("The downsampling factor must be 1 or more (or empty for the "
                          "model's), found %s" % factor)
            return errors
        box = self._getWindowBox(inputSet)
        if not box:
            errors.append("Neither the model nor the coordinates have a box size; give "
                          "one in the form")
        elif self._windowSize(box) != model.getWindowSize():
            errors.append("The windows would be %d px (box %d px downsampled by %s) but "
                          "the model was trained on %d px windows (box %s px downsampled "
                          "by %s): leave box size and downsampling empty to use the "
                          "model's" % (self._windowSize(box), box, factor,
                                       model.getWindowSize(), model.getBoxSize(),
                                       model.getDownFactor()))
        return errors

    def _summary(self):
        keptName, discardedName = self._getOutputNames()
        if not self.hasAttribute(keptName):
            return ["Pruning not started yet."]
        kept = getattr(self, keptName).getSize()
        discarded = getattr(self, discardedName).getSize()
        summary = ["Kept %d of %d items (probability of being a particle >= %s); "
                   "%d discarded." % (kept, kept + discarded, self.threshold.get(),
                                      discarded)]
        for outputName in (keptName, discardedName):
            counts = getattr(self, outputName).aggregate(["COUNT"], JUNK_CLASS_ATTR,
                                                         [JUNK_CLASS_ATTR])
            summary.append("%s by predicted class: %s" % (outputName, ", ".join(
                "%s %d" % (row[JUNK_CLASS_ATTR], row["COUNT"]) for row in counts)))
        return summary

    def _methods(self):
        keptName, _ = self._getOutputNames()
        if not self.hasAttribute(keptName):
            return []
        copies = self.getTtaCopies()
        return ["False picks of %s were pruned with a PickerOptimizer classifier %s "
                "(%s) at a particle probability threshold of %s%s."
                % (self.getObjectTag("inputSet"), reference("Li2022PickerOptimizer"),
                   self.getObjectTag("inputModel"), self.threshold.get(),
                   ", the probability averaged over %d mirrored and turned copies of "
                   "each window" % copies if copies > 1 else "")]

    def _citations(self):
        return ["Li2022PickerOptimizer"]

    # --------------------------- UTILS functions -----------------------------
    def getThreshold(self):
        """The particle probability the pruning kept items at."""
        return self.threshold.get()

    def _isCoordinates(self):
        return isinstance(self.inputSet.get(), SetOfCoordinates)

    def _getOutputNames(self):
        name = "outputCoordinates" if self._isCoordinates() else "outputParticles"
        return name, name + DISCARDED

    def _getOutputSets(self, inputSet):
        """The kept and discarded sets, created open on the first chunk."""
        names = self._getOutputNames()
        if self.hasAttribute(names[0]):
            outputSets = [getattr(self, name) for name in names]
            for outputSet in outputSets:
                outputSet.enableAppend()
            return outputSets
        outputSets = []
        for suffix in ("", DISCARDED):
            if self._isCoordinates():
                outputSet = self._createSetOfCoordinates(self.inputSet.get().getMicrographs(),
                                                         suffix)
                outputSet.setBoxSize(inputSet.getBoxSize())
            else:
                outputSet = self._createSetOfParticles(suffix)
                outputSet.copyInfo(inputSet)
            outputSet.setStreamState(Set.STREAM_OPEN)
            outputSets.append(outputSet)
        self._defineOutputs(**dict(zip(names, outputSets)))
        for outputSet in outputSets:
            self._defineSourceRelation(self.inputSet, outputSet)
        return outputSets

    def _lastProcessedId(self):
        ids = [0]
        for name in self._getOutputNames():
            if self.hasAttribute(name):
                ids += [item.getObjId() for item in getattr(self, name).iterItems(
                    orderBy="id", direction="DESC", limit=1)]
        return max(ids)

    def _loadInput(self):
        """The input set read afresh from its file, to see streamed items."""
        inputSet = self.inputSet.get()
        fresh = inputSet.getClass()(filename=inputSet.getFileName())
        fresh.loadAllProperties()
        if isinstance(fresh, SetOfCoordinates):
            fresh.setMicrographs(self._loadMicrographs(inputSet.getMicrographs()))
        return fresh

    @staticmethod
    def _loadMicrographs(micrographs):
        fresh = micrographs.getClass()(filename=micrographs.getFileName())
        fresh.loadAllProperties()
        return fresh

    def _getWindowBox(self, inputSet):
        """The box in input pixels: the form's, else the model's, else the
        coordinates'; a particle's own size."""
        model = self.inputModel.get()
        return windowBox(inputSet, self.boxSize.get() or model.getBoxSize())

    def _getDownFactor(self):
        return self.downFactor.get() or self.inputModel.get().getDownFactor() or 1.0

    def _windowSize(self, box):
        from ..engine.windows import downsampled_box
        return downsampled_box(box, self._getDownFactor())
