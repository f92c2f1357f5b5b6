"""Subset by score: the picks or particles whose cryoprune score reaches a
threshold, the stricter cut chosen in the picks viewer."""
import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.objects import SetOfCoordinates, SetOfParticles
from pwem.protocols import EMProtocol

from ..constants import SCORES

SCORE_LABELS = {"picker": "picker's confidence",
                "pruner": "pruner's probability of being a particle"}


class CryoPruneProtScoreSubset(EMProtocol):
    """Keeps the coordinates or particles whose score (the picker's confidence,
    or the pruner's probability of being a particle) is at least the
    threshold. The picks viewer shows how many stay at each
    threshold and saves this protocol for the one chosen."""
    _label = "subset by score"
    _devStatus = BETA
    _possibleOutputs = {"outputCoordinates": SetOfCoordinates,
                        "outputParticles": SetOfParticles}

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSet", params.PointerParam,
                      pointerClass="SetOfCoordinates,SetOfParticles", important=True,
                      label="Scored picks",
                      help="Coordinates or particles from the YOLO picking or the picker "
                           "optimizer pruning: each carries a score.")
        form.addParam("scoreStep", params.EnumParam, default=0, label="Score",
                      choices=[SCORE_LABELS[step] for step in SCORES],
                      help="Pruned picks carry both: the picker's confidence and the "
                           "pruner's probability of being a particle.")
        form.addParam("threshold", params.FloatParam, default=0.5,
                      validators=[params.Range(0.0, 1.0)], label="Score threshold",
                      help="Keep the items scoring at least this. The wizard opens "
                           "the histogram of the input's scores with the threshold on "
                           "a slider; the picks viewer also shows the picks that stay.")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep)

    def createOutputStep(self):
        inputSet = self.inputSet.get()
        threshold = self.threshold.get()
        if isinstance(inputSet, SetOfCoordinates):
            subset = self._createSetOfCoordinates(inputSet.getMicrographs())
            subset.setBoxSize(inputSet.getBoxSize())
        else:
            subset = self._createSetOfParticles()
            subset.copyInfo(inputSet)
        subset.copyItems(inputSet, itemSelectedCallback=lambda item:
                         getattr(item, self._scoreAttribute()).get() >= threshold)
        self._defineOutputs(**{self._outputName(): subset})
        self._defineSourceRelation(self.inputSet, subset)

    def _validate(self):
        inputSet = self.inputSet.get()
        attribute = self._scoreAttribute()
        if inputSet is not None and not inputSet.getFirstItem().hasAttribute(attribute):
            return ["%s has no %s (%s): use the output of a cryoprune picking or pruning, "
                    "or choose the other score" % (self.getObjectTag("inputSet"),
                                                   self.getEnumText("scoreStep"), attribute)]
        return []

    def _summary(self):
        if not self.hasAttribute(self._outputName()):
            return ["Subset not made yet."]
        return ["Kept %d of %d items with %s >= %s."
                % (getattr(self, self._outputName()).getSize(),
                   self.inputSet.get().getSize(), self.getEnumText("scoreStep"),
                   self.threshold.get())]

    def _scoreAttribute(self):
        score, _ = list(SCORES.values())[self.scoreStep.get()]
        return score

    def _outputName(self):
        isCoordinates = isinstance(self.inputSet.get(), SetOfCoordinates)
        return "outputCoordinates" if isCoordinates else "outputParticles"
