"""Wizards of the forms: Scipion finds every Wizard class in this module."""
import math

from pyworkflow.gui.dialog import askString
from pyworkflow.wizard import Wizard
from pwem.objects import SetOfCoordinates

from .constants import SCORES
from .engine.plots import (add_histogram_slider, draw_score_histogram,
                           draw_validation_histogram, validation_picks)
from .protocols import (CryoPruneProtPickerOptimizer, CryoPruneProtPickerOptimizerTraining,
                        CryoPruneProtScoreSubset, CryoPruneProtYoloPicking,
                        CryoPruneProtYoloTraining)
from .protocols.protocol_score_subset import SCORE_LABELS
from .viewers.viewer_picks import readPicks

BOX_PER_DIAMETER = 1.5  # a box of 1.5 particle diameters keeps some background around it


def _firstBox(pointers):
    inputSets = [pointer.get() for pointer in pointers]
    return next((s.getBoxSize() for s in inputSets
                 if s is not None and hasattr(s, "getBoxSize") and s.getBoxSize()), None)


def _modelBox(protocol):
    model = protocol.inputModel.get()
    return model.getBoxSize() if model is not None else None


def boxFromDiameter(diameter, samplingRate):
    """The even box size in pixels of BOX_PER_DIAMETER particle diameters
    (diameter in A, sampling rate in A/px)."""
    return 2 * math.ceil(BOX_PER_DIAMETER * diameter / samplingRate / 2)


def _samplingRate(inputSet):
    if isinstance(inputSet, SetOfCoordinates):
        inputSet = inputSet.getMicrographs()
    return inputSet.getSamplingRate() if inputSet is not None else None


class CryoPruneBoxSizeWizard(Wizard):
    """Fills the box size with the one the inputs carry: the annotated
    coordinates' for the trainings, the model's for picking and pruning. When
    the inputs carry none, asks for the particle diameter and gives 1.5
    diameters at the inputs' pixel size."""
    _targets = [(CryoPruneProtYoloTraining, ["boxSize"]),
                (CryoPruneProtPickerOptimizerTraining, ["boxSize"]),
                (CryoPruneProtYoloPicking, ["boxSize"]),
                (CryoPruneProtPickerOptimizer, ["boxSize"])]

    @classmethod
    def getBoxSize(cls, protocol):
        """The box size the inputs carry, None when they carry none."""
        if isinstance(protocol, CryoPruneProtYoloTraining):
            return _firstBox(protocol.inputCoordinates)
        if isinstance(protocol, CryoPruneProtPickerOptimizerTraining):
            return _firstBox([protocol.inputGood] + list(protocol.inputBad))
        return _modelBox(protocol)

    @classmethod
    def getSamplingRate(cls, protocol):
        """The pixel size (A) of the inputs the box is cut from, None before
        they are chosen."""
        if isinstance(protocol, CryoPruneProtYoloTraining):
            return _samplingRate(protocol.inputMicrographs.get())
        if isinstance(protocol, CryoPruneProtPickerOptimizerTraining):
            return _samplingRate(protocol.inputGood.get())
        return None

    @classmethod
    def show(cls, form, *params):
        boxSize = cls.getBoxSize(form.protocol)
        samplingRate = cls.getSamplingRate(form.protocol)
        if not boxSize and samplingRate:
            boxSize = cls._askDiameter(form, samplingRate)
        if boxSize:
            form.setVar("boxSize", boxSize)
        elif not samplingRate:
            form.showWarning("The inputs carry no box size: choose them first, or give "
                             "about 1.5 particle diameters in pixels.")

    @staticmethod
    def _askDiameter(form, samplingRate):
        answer = askString("Box size from the particle diameter",
                           "Particle diameter (A), at %.3g A/px:" % samplingRate, form.root)
        try:
            diameter = float(answer)
        except (TypeError, ValueError):
            return None
        if diameter <= 0:
            form.showWarning("The particle diameter must be a positive number of A.")
            return None
        return boxFromDiameter(diameter, samplingRate)


class CryoPruneThresholdWizard(Wizard):
    """Opens a score histogram stacked by class with the threshold on a
    slider; moving it sets the form's threshold. Subset by score: the input's
    scores, counting the items that stay. Pruning: the pruner model's
    validation windows by true class, with the precision and recall of
    keeping those at the threshold."""
    _targets = [(CryoPruneProtScoreSubset, ["threshold"]),
                (CryoPruneProtPickerOptimizer, ["threshold"])]

    @classmethod
    def histogram(cls, protocol):
        """(draw(ax, threshold), None) for the form's inputs, or (None, what
        is missing)."""
        if isinstance(protocol, CryoPruneProtPickerOptimizer):
            return cls._validationHistogram(protocol.inputModel.get())
        errors = protocol._validate() if protocol.inputSet.get() is not None \
            else ["Choose the scored picks first."]
        if errors:
            return None, errors[0]
        step = list(SCORES)[protocol.scoreStep.get()]
        picks = readPicks([protocol.inputSet.get()], step)
        return (lambda ax, threshold:
                draw_score_histogram(ax, picks, threshold, SCORE_LABELS[step])), None

    @staticmethod
    def _validationHistogram(model):
        if model is None:
            return None, "Choose the pruner model first."
        metadata = model.getMetadata()
        if not metadata.get("validation_windows"):
            return None, ("The model keeps no validation windows (trained without a "
                          "validation fraction, or by cryoprune 0.1): choose the "
                          "threshold in the picks viewer after pruning.")
        picks = validation_picks(metadata["validation_windows"], metadata["classes"])
        particle = metadata["classes"][0]
        return (lambda ax, threshold:
                draw_validation_histogram(ax, picks, particle, threshold)), None

    @classmethod
    def drawHistogram(cls, figure, protocol, onChange=None):
        """The histogram and its slider in `figure`: (slider, None), or
        (None, what is missing)."""
        draw, missing = cls.histogram(protocol)
        if draw is None:
            return None, missing
        ax = figure.add_subplot()
        draw(ax, protocol.threshold.get())
        return add_histogram_slider(figure, ax, draw, protocol.threshold.get(), onChange), None

    @classmethod
    def show(cls, form, *params):
        from pwem.viewers import EmPlotter
        plotter = EmPlotter(figsize=(7, 4.5), windowTitle="Score threshold")
        plotter.tightLayoutOn = False  # the slider has its own axes
        plotter.slider, missing = cls.drawHistogram(
            plotter.getFigure(), form.protocol,
            lambda value: form.setVar("threshold", round(value, 3)))
        if missing:
            plotter.close()
            form.showWarning(missing)
        else:
            plotter.show()
