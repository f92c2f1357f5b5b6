"""Picks and their scores from the YOLO picking and the picker optimizer
pruning: picks on a micrograph at a movable threshold, score histograms, a
precision-recall curve against reference coordinates, and the subset above
the threshold."""
import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer
from pwem.objects import SetOfCoordinates

from ..constants import SCORES
from ..engine.io import read_micrograph
from ..protocols import (CryoPruneProtPickerOptimizer, CryoPruneProtScoreSubset,
                         CryoPruneProtYoloPicking)
from ..protocols.protocol_pruning import DISCARDED
from ..engine.plots import (Picks, add_threshold_slider, draw_precision_recall,
                    draw_score_histogram, match_to_reference, picks_figure)

# Which step's score a protocol's outputs are viewed by, and what its score
# and class mean
SCORE_NAMES = {CryoPruneProtYoloPicking: ("picker", "YOLO confidence", "view class"),
               CryoPruneProtPickerOptimizer: ("pruner", "probability of being a particle",
                                              "predicted class")}


def micrographNames(coordSet):
    return {mic.getObjId(): mic.getMicName() for mic in coordSet.getMicrographs()}


def readPicks(itemSets, step="picker"):
    """Picks of coordinate or particle sets: position, the score and class
    that `step` (a key of SCORES) gave them, and the name of the micrograph of
    each item (particles: of their coordinate; none for particles without one)."""
    scoreAttr, classAttr = SCORES[step]
    rows = []
    for itemSet in itemSets:
        isCoordinates = isinstance(itemSet, SetOfCoordinates)
        names = micrographNames(itemSet) if isCoordinates else {}
        for item in itemSet.iterItems(orderBy="id"):
            coord = item if isCoordinates else item.getCoordinate()
            row = {"x": np.nan, "y": np.nan, "micrograph": "",
                   "score": item.getAttributeValue(scoreAttr, np.nan),
                   "class": item.getAttributeValue(classAttr, "")}
            if coord is not None:
                row.update(x=coord.getX(), y=coord.getY(),
                           micrograph=names.get(coord.getMicId(), coord.getMicName()))
            rows.append(row)
    return Picks.from_rows(rows)


def scoredSets(protocol):
    """The output sets of a picking or pruning run that hold every scored
    item (the pruner splits them into kept and discarded)."""
    names = ["outputCoordinates"]
    if isinstance(protocol, CryoPruneProtPickerOptimizer):
        names = list(protocol._getOutputNames())
    return [getattr(protocol, name) for name in names if protocol.hasAttribute(name)]


class CryoPrunePicksViewer(ProtocolViewer):
    """Picks on a micrograph in one colour per class, with a score threshold
    that can be moved; histograms of the scores per class; precision and
    recall against reference coordinates; and a subset of the picks scoring
    at least the threshold."""
    _label = "picks and scores"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoPruneProtYoloPicking, CryoPruneProtPickerOptimizer]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("threshold", params.FloatParam, default=self.protocol.getThreshold(),
                      validators=[params.Range(0.0, 1.0)], label="Score threshold",
                      help="Picks scoring at least this are drawn in their class colour "
                           "and counted as kept; it starts at the run's threshold. On "
                           "the micrograph, the slider under it moves it too.")
        form.addParam("micrograph", params.IntParam, default=1,
                      validators=[params.Positive], label="Micrograph number",
                      help="Which micrograph of the input to draw: 1 for the first.")
        form.addParam("displayPicks", params.LabelParam, label="Picks on the micrograph",
                      help="The micrograph with a circle one box across at each pick.")
        form.addParam("displayHistogram", params.LabelParam, label="Score histogram",
                      help="Scores of all picks stacked by class, with the threshold "
                           "and how many picks reach it.")
        form.addParam("referenceCoordinates", params.PointerParam,
                      pointerClass="SetOfCoordinates", allowsNull=True,
                      label="Reference coordinates",
                      help="Particles known to be right (picked by hand, or simulated) "
                           "on some of the same micrographs, matched by micrograph name.")
        form.addParam("matchRadius", params.FloatParam, allowsNull=True,
                      validators=[params.Positive], label="Match radius (px)",
                      help="A pick counts as a reference particle when its centre is "
                           "this close. Empty: half the box size.")
        form.addParam("displayPrecisionRecall", params.LabelParam,
                      label="Precision-recall curve",
                      help="Precision against recall of the picks ranked by score, on "
                           "the micrographs of the reference coordinates.")
        form.addParam("createSubset", params.LabelParam,
                      label="Subset of the picks at the threshold",
                      help="Run a 'subset by score' protocol that writes the picks "
                           "scoring at least the threshold as a new set.")

    def _getVisualizeDict(self):
        return {"displayPicks": self._showPicks, "displayHistogram": self._showHistogram,
                "displayPrecisionRecall": self._showPrecisionRecall,
                "createSubset": self._createSubset}

    # --------------------------- views ---------------------------------------
    def _showPicks(self, paramName=None):
        coordSets = [s for s in scoredSets(self.protocol) if isinstance(s, SetOfCoordinates)]
        if not coordSets:
            return [self.infoMessage("No coordinates to draw: picks are drawn for "
                                     "coordinate outputs only.", title=self._label)]
        mics = list(coordSets[0].getMicrographs().iterItems(orderBy="id"))
        if self.micrograph.get() > len(mics):
            return [self.errorMessage("Micrograph %d asked for; there are %d"
                                      % (self.micrograph.get(), len(mics)), self._label)]
        mic = mics[self.micrograph.get() - 1]
        picks = readPicks(coordSets, self._step())
        plotter = self._plotter(figsize=(8, 8.5))
        figure = plotter.getFigure()
        image = read_micrograph(mic.getFileName())
        ax = picks_figure(figure, image, picks.on(mic.getMicName()),
                          coordSets[0].getBoxSize(), self.threshold.get(), mic.getMicName(),
                          picks.class_names())
        plotter.slider = add_threshold_slider(figure, ax, image, picks.on(mic.getMicName()),
                                              coordSets[0].getBoxSize(),
                                              self.threshold.get(), mic.getMicName())
        return [plotter]

    def _showHistogram(self, paramName=None):
        _, scoreName, className = SCORE_NAMES[type(self.protocol)]
        plotter = self._plotter(figsize=(7, 4.5))
        ax = plotter.getFigure().add_subplot()
        draw_score_histogram(ax, readPicks(scoredSets(self.protocol), self._step()),
                             self.threshold.get(), scoreName)
        ax.set_title("%s by %s" % (scoreName, className), fontsize=9)
        return [plotter]

    def _showPrecisionRecall(self, paramName=None):
        reference = self.referenceCoordinates.get()
        if reference is None:
            return [self.errorMessage("Choose the reference coordinates first.",
                                      self._label)]
        itemSets = scoredSets(self.protocol)
        radius = self.matchRadius.get() or itemSets[0].getBoxSize() / 2
        matched, scores, count = match_to_reference(readPicks(itemSets, self._step()),
                                                    readPicks([reference]), radius)
        plotter = self._plotter(figsize=(5.5, 5))
        draw_precision_recall(plotter.getFigure().add_subplot(), matched, scores, count,
                              self.threshold.get())
        return [plotter]

    def _createSubset(self, paramName=None):
        """Launch the subset by score on the set that holds the picks at or
        above the threshold."""
        prot = self.protocol
        name = scoredSets(prot)[0].getLastName()
        if isinstance(prot, CryoPruneProtPickerOptimizer) \
                and self.threshold.get() < prot.getThreshold():
            return [self.errorMessage(
                "The pruning kept the items scoring %s or more; items below are in "
                "its %s output: make the subset from that one, or choose a threshold "
                "of at least %s" % (prot.getThreshold(), name + DISCARDED,
                                    prot.getThreshold()), self._label)]
        project = self.getProject()
        subset = project.newProtocol(CryoPruneProtScoreSubset, threshold=self.threshold.get(),
                                     scoreStep=list(SCORES).index(self._step()))
        subset.inputSet.set(prot)
        subset.inputSet.setExtended(name)
        project.launchProtocol(subset)
        return [self.infoMessage("Launched %s: the picks of %s scoring at least %s."
                                 % (subset.getRunName(), name, self.threshold.get()),
                                 self._label)]

    def _step(self):
        """The step whose scores this protocol's outputs are viewed by."""
        return SCORE_NAMES[type(self.protocol)][0]

    def _plotter(self, figsize):
        from pwem.viewers import EmPlotter
        plotter = EmPlotter(figsize=figsize, windowTitle=self.protocol.getRunName())
        plotter.tightLayoutOn = False  # the plots place their own axes and slider
        return plotter
