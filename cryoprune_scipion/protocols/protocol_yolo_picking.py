"""Particle picking with a trained YOLO detector; works on streamed input."""
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.protocols import ProtParticlePickingAuto

from ..constants import CLASS_ATTR, MODEL_METADATA, SCORE_ATTR
from ..convert import (coordinatesPath, getCoordinateClass, linkMicrographs,
                       readCoordinatesCsv)
from ..engine.picking import Detection, stored_threshold
from .base import CryoPruneProtocol, OptionalRange, reference
from .class_names import NAME_PATTERN

OUTPUT_COORDINATES = "outputCoordinates"


class CryoPruneProtYoloPicking(CryoPruneProtocol, ProtParticlePickingAuto):
    """Picks particles with a YOLO detector trained by the YOLO training
    protocol. Each coordinate carries its confidence (`_cryopruneScore`) and
    view class (`_cryopruneClass`); besides all picks, one SetOfCoordinates
    per view class is output when the input stream closes."""
    _label = "yolo picking"
    _devStatus = BETA

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        ProtParticlePickingAuto._defineParams(self, form)
        form.addParam("inputModel", params.PointerParam,
                      pointerClass="CryoPruneYoloModel", important=True,
                      label="YOLO model",
                      help="Output of the YOLO training protocol; it brings its view "
                           "classes, box size and preprocessing.")
        form.addParam("boxSize", params.IntParam, allowsNull=True,
                      label="Box size (px)",
                      help="Box size of the output coordinates, in micrograph "
                           "pixels. Empty (the start): the box size the model was "
                           "trained with.")
        form.addSection(label="Detection")
        form.addParam("threshold", params.FloatParam, allowsNull=True,
                      validators=[OptionalRange(0.0, 1.0)],
                      label="Confidence threshold",
                      help="Keep detections of at least this confidence. Empty (the "
                           "start): the threshold the training chose on its validation "
                           "strips for the test-time augmentation below (the summary "
                           "of the training says which), or %s for models trained "
                           "without validation. Lower it to find more particles (and "
                           "let the pruner remove the junk), raise it for fewer false "
                           "picks. Every coordinate keeps its score, so a stricter "
                           "threshold can be applied later with a subset."
                           % Detection.threshold)
        form.addParam("border", params.IntParam, allowsNull=True,
                      label="Edge exclusion (px)",
                      help="Picks whose centre is closer than this to the micrograph "
                           "edge are dropped: their boxes cannot be extracted whole. "
                           "Empty (the start): half the box size; 0 keeps every "
                           "pick.")
        form.addParam("iou", params.FloatParam, default=Detection.iou,
                      validators=[params.Range(0.01, 1.0)],
                      expertLevel=params.LEVEL_ADVANCED, label="NMS IoU",
                      help="Of two boxes overlapping more than this (intersection over "
                           "union), only the more confident is kept; %s to start, "
                           "lower for crowded micrographs with touching particles "
                           "counted twice." % Detection.iou)
        form.addParam("maxDetections", params.IntParam, default=Detection.max_det,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Maximum detections per micrograph",
                      help="The most picks kept on one micrograph, the most confident "
                           "first; %d is far above a usual micrograph's particles."
                           % Detection.max_det)
        self._defineTtaParam(
            form, Detection.tta,
            help="Pick also in mirrored and turned copies of each micrograph and "
                 "give each particle the mean of its scores over them: fewer false "
                 "picks and better ranked scores, at one detection pass per copy. On "
                 "beta-galactosidase, 4 copies (the start) raised F1 from 0.841 to "
                 "0.849 and average precision from 0.861 to 0.877; 8 copies add "
                 "little (0.850, 0.881) for twice the detection time. Reading and "
                 "filtering the micrographs costs the same either way.")
        self._defineComputeParams(form, "picking", threads=4,
                                  severalGpus="the micrographs of a step split over them")
        self._defineStreamingParams(form)
        form.getParam("streamingBatchSize").setDefault(16)

    # --------------------------- STEPS functions -----------------------------
    def _pickMicrograph(self, mic, *args):
        self._pickMicrographList([mic], *args)

    def _pickMicrographList(self, micList, *args):
        if not micList:
            return
        micFiles = linkMicrographs(micList, self._getTmpPath("micrographs"))
        os.makedirs(self.getCoordsDir(), exist_ok=True)
        args = ["--model %s" % os.path.abspath(self.inputModel.get().getFileName()),
                "--micrographs %s" % " ".join(micFiles),
                "--out %s" % self.getCoordsDir(),
                "--threshold %s" % self.getThreshold(), "--iou %s" % self.iou,
                "--max-det %d" % self.maxDetections,
                "--tta %d" % self.getTtaCopies(),
                "--border %s" % self._getBorder()]
        self.runCryoprune("pick", " ".join(args))

    def readCoordsFromMics(self, outputDir, micDoneList, outputCoords):
        if not outputCoords.getBoxSize():
            outputCoords.setBoxSize(self._getBoxSize())
        classNames = self.inputModel.get().getClassNames()
        for mic in micDoneList:
            readCoordinatesCsv(coordinatesPath(outputDir, mic.getObjId()), mic,
                               outputCoords, classNames)

    def createOutputStep(self):
        """One SetOfCoordinates per view class, from all picks, once every
        micrograph of the (closed) input stream is picked."""
        allCoords = getattr(self, OUTPUT_COORDINATES, None)
        if allCoords is None:
            return
        for className in self.inputModel.get().getClassNames():
            classCoords = self._createSetOfCoordinates(self.getInputMicrographsPointer(),
                                                       suffix="_" + className)
            classCoords.setBoxSize(allCoords.getBoxSize())
            classCoords.copyItems(
                allCoords, itemSelectedCallback=lambda c, name=className:
                getCoordinateClass(c) == name)
            classCoords.setObjComment(self.getSummary(classCoords))
            outputName = "%s_%s" % (OUTPUT_COORDINATES, className)
            self._defineOutputs(**{outputName: classCoords})
            self._defineSourceRelation(self.getInputMicrographsPointer(), classCoords)
            self._defineSourceRelation(self.inputModel, classCoords)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        model = self.inputModel.get()
        if model is None or self.getInputMicrographs() is None:
            return []  # pyworkflow reports the missing inputs
        errors = []
        weights = model.getFileName()
        metadata = os.path.join(os.path.dirname(weights or ""), MODEL_METADATA)
        if not weights or not os.path.isfile(weights):
            errors.append("Model weights %s not found: the training run was deleted "
                          "or moved; train again or import the model" % weights)
        elif not os.path.isfile(metadata):
            errors.append("Model metadata %s not found next to the weights: train "
                          "again" % metadata)
        names = model.getClassNames()
        if not names:
            errors.append("The model has no view class names: train it again")
        bad = [n for n in names if not NAME_PATTERN.match(n)]
        if bad:
            errors.append("Unknown view class names %s in the model: names must be "
                          "letters, digits and underscores; train again with valid "
                          "names" % ", ".join(bad))
        if (self.border.get() or 0) < 0:
            errors.append("Edge exclusion must be 0 or more pixels, found %d"
                          % self.border)
        boxSize = self._getBoxSize()
        width, height, _ = self.getInputMicrographs().getDim()
        if not boxSize or boxSize <= 0:
            errors.append("No box size: give one in the form")
        elif boxSize > min(width, height):
            errors.append("Box size %d px is larger than the micrographs (%d x %d px)"
                          % (boxSize, width, height))
        return errors

    def getSummary(self, coordSet):
        return "%d particles, box size %s px" % (coordSet.getSize(), coordSet.getBoxSize())

    def _summary(self):
        summary = ProtParticlePickingAuto._summary(self)
        if self.inputModel.get() is not None:
            summary.append("Confidence threshold %s%s" % (
                self.getThreshold(),
                " (chosen by the training)" if self.threshold.get() is None else ""))
        allCoords = getattr(self, OUTPUT_COORDINATES, None)
        if allCoords is not None and allCoords.getSize():
            for row in allCoords.aggregate(["COUNT", "AVG"], SCORE_ATTR, [CLASS_ATTR]):
                summary.append("View class %s: %d picks, mean confidence %.2f"
                               % (row[CLASS_ATTR], row["COUNT"], row["AVG"]))
        return summary

    def _methods(self):
        methods = ProtParticlePickingAuto._methods(self)
        model = self.inputModel.get()
        if model is not None:
            methods.append("Particles were picked with a YOLO detector %s (%s, view "
                           "classes %s) at a confidence threshold of %s and an NMS IoU "
                           "of %s." % (reference("Jocher2023Ultralytics"),
                                       self.getObjectTag("inputModel"),
                                       ", ".join(model.getClassNames()), self.getThreshold(),
                                       self.iou))
        return methods

    def _citations(self):
        return ["Jocher2023Ultralytics"]

    # --------------------------- UTILS functions -----------------------------
    def getCoordsDir(self):
        return self._getExtraPath("coordinates")

    def getThreshold(self):
        """The confidence threshold of the picks: the form's, else the one the
        model chose at training for the test-time copies picked with."""
        if self.threshold.get() is not None:
            return self.threshold.get()
        return stored_threshold(self.inputModel.get().getMetadata(),
                                self.getTtaCopies())

    def _getBorder(self):
        border = self.border.get()
        return self._getBoxSize() / 2 if border is None else border

    def _getBoxSize(self):
        return self.boxSize.get() or self.inputModel.get().getBoxSize()
