"""Wizards of the forms: Scipion finds every Wizard class in this module."""
from pyworkflow.wizard import Wizard

from .protocols import (CryoPruneProtPickerOptimizer, CryoPruneProtPickerOptimizerTraining,
                        CryoPruneProtYoloPicking, CryoPruneProtYoloTraining)


def _firstBox(pointers):
    inputSets = [pointer.get() for pointer in pointers]
    return next((s.getBoxSize() for s in inputSets
                 if s is not None and hasattr(s, "getBoxSize") and s.getBoxSize()), None)


def _modelBox(protocol):
    model = protocol.inputModel.get()
    return model.getBoxSize() if model is not None else None


class CryoPruneBoxSizeWizard(Wizard):
    """Fills the box size with the one the inputs carry: the annotated
    coordinates' for the trainings, the model's for picking and pruning."""
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
    def show(cls, form, *params):
        boxSize = cls.getBoxSize(form.protocol)
        if boxSize:
            form.setVar("boxSize", boxSize)
        else:
            form.showWarning("The inputs carry no box size: choose them first, or give "
                             "about 1.5 particle diameters in pixels.")
