"""Trained models as Scipion objects: a training protocol outputs one, a
later protocol takes it as input. Each points at a weights file whose
metadata (`model.json`) sits beside it."""
import json
import os

import pyworkflow.object as pwobj
from pwem.objects import EMObject

from .constants import MODEL_METADATA


class CryoPruneModel(EMObject):
    """A trained network stored in a file."""

    def __init__(self, filename=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._filename = pwobj.String(filename)

    def getFileName(self):
        return self._filename.get()

    def setFileName(self, filename):
        self._filename.set(filename)

    def getMetadata(self):
        """The metadata written by the CLI next to the weights."""
        path = os.path.join(os.path.dirname(self.getFileName()), MODEL_METADATA)
        with open(path) as f:
            return json.load(f)

    def __str__(self):
        return "%s (%s)" % (self.getClassName(), self.getFileName())


class CryoPruneYoloModel(CryoPruneModel):
    """A YOLO particle detector with its view classes and preprocessing."""

    def __init__(self, **kwargs):
        CryoPruneModel.__init__(self, **kwargs)
        self._classNames = pwobj.CsvList(pType=str)
        self._boxSize = pwobj.Integer()
        self._workingSize = pwobj.Integer()
        self._preprocessing = pwobj.String()

    def getClassNames(self):
        return list(self._classNames)

    def setClassNames(self, names):
        self._classNames.set(list(names))

    def getBoxSize(self):
        return self._boxSize.get()

    def setBoxSize(self, boxSize):
        self._boxSize.set(boxSize)

    def getWorkingSize(self):
        return self._workingSize.get()

    def setWorkingSize(self, size):
        self._workingSize.set(size)

    def getPreprocessing(self):
        """Preprocessing settings as a dict."""
        return json.loads(self._preprocessing.get() or "{}")

    def setPreprocessing(self, settings):
        self._preprocessing.set(json.dumps(settings, sort_keys=True))


class CryoPrunePrunerModel(CryoPruneModel):
    """A PickerOptimizer classifier: particle against junk classes. It
    knows how its windows were made (box size in input pixels, Fourier
    downsampling, the resulting window size), so that pruning cuts the same
    windows without asking again."""

    def __init__(self, **kwargs):
        CryoPruneModel.__init__(self, **kwargs)
        self._classNames = pwobj.CsvList(pType=str)
        self._boxSize = pwobj.Integer()
        self._downFactor = pwobj.Float()
        self._windowSize = pwobj.Integer()

    def getClassNames(self):
        return list(self._classNames)

    def setClassNames(self, names):
        self._classNames.set(list(names))

    def getBoxSize(self):
        """Window cut around each coordinate, in input pixels, before
        downsampling."""
        return self._boxSize.get()

    def setBoxSize(self, boxSize):
        self._boxSize.set(boxSize)

    def getDownFactor(self):
        return self._downFactor.get()

    def setDownFactor(self, factor):
        self._downFactor.set(factor)

    def getWindowSize(self):
        """Side of the windows the network was trained on, in pixels."""
        return self._windowSize.get()

    def setWindowSize(self, size):
        self._windowSize.set(size)


class CryoPruneEncoderModel(CryoPruneModel):
    """A contrastive particle encoder, reusable as a starting point."""

    def __init__(self, **kwargs):
        CryoPruneModel.__init__(self, **kwargs)
        self._workingSize = pwobj.Integer()

    def getWorkingSize(self):
        return self._workingSize.get()

    def setWorkingSize(self, size):
        self._workingSize.set(size)
