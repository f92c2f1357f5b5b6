"""Training of a YOLO particle detector on a few annotated micrographs."""
import os

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pyworkflow import BETA
from pwem.protocols import EMProtocol

from ..constants import MODEL_WEIGHTS, YOLO_FAMILIES, YOLO_SIZES
from ..convert import (isOnMicrograph, linkMicrographs, micrographKeys,
                       writeCoordinatesCsv)
from ..engine.picking import VALIDATION_MIN_PARTICLES, Detection, PickerTraining
from ..engine.preprocess import WAVELET_MODES, PreprocessSettings
from ..objects import CryoPruneYoloModel
from .base import CryoPruneProtocol, reference
from .class_names import NAME_PATTERN, namesFromInputs

OUTPUT_MODEL = "outputModel"
PREPROCESS = PreprocessSettings()


def describeInput(pointer):
    """'outputCoordinates of import coordinates' for messages."""
    return "%s of %s" % (pointer.getExtended() or "input",
                         pointer.getObjValue().getRunName())


def describeSplit(metadata):
    """What the training did with the annotated micrographs."""
    annotated = metadata["micrographs_trained"]
    if "validation_fraction" in metadata:
        fraction = metadata["validation_fraction"]
        split = ("%d annotated micrographs, a strip of %d %% of each held out for "
                 "validation" % (annotated, round(100 * fraction)) if fraction else
                 "%d annotated micrographs, validated on the training tiles" % annotated)
    elif metadata.get("micrographs_held_out"):  # models trained before the strips
        split = ("%d micrographs trained, %d held out for validation"
                 % (annotated - metadata["micrographs_held_out"],
                    metadata["micrographs_held_out"]))
    else:
        split = "%d annotated micrographs" % annotated
    return "%s; %d without coordinates skipped" % (split, metadata["micrographs_skipped"])


def describePreprocessingChoice(metadata):
    """The preprocessing the training chose by validation, with both trials'
    scores, or None when it did not choose."""
    choice = metadata.get("preprocessing_choice")
    if not choice:
        return None
    names = {"filters": "restored contrast", "flattening": "background flattening only"}
    if not choice["trials"]:
        return ("Preprocessing: restored contrast, not chosen by validation (no "
                "validation strips)")
    scores = ", ".join("%.3f with %s" % (trial["view_f1"], names[name])
                       for name, trial in choice["trials"].items())
    return "Preprocessing chosen by validation: %s (view F1 %s)" % (names[choice["chosen"]],
                                                                     scores)


def describeThreshold(metadata):
    """The picking threshold the training chose, or why it chose none."""
    if "thresholds" not in metadata:
        return ("Picking threshold: none chosen (no validation strips: validation "
                "fraction 0, or fewer than %d annotated particles in them); picking starts "
                "at %s" % (VALIDATION_MIN_PARTICLES, Detection.threshold))
    chosen = metadata["threshold_validation"][str(Detection.tta)]
    return ("Picking threshold chosen on the validation strips: %s with %d test-time "
            "copies (precision %.3f, recall %.3f, F1 %.3f on %d particles); %s"
            % (metadata["thresholds"][str(Detection.tta)], Detection.tta,
               chosen["precision"], chosen["recall"], chosen["f1"], chosen["particles"],
               ", ".join("%s with %s" % (threshold, copies)
                         for copies, threshold in metadata["thresholds"].items())))


class CryoPruneProtYoloTraining(CryoPruneProtocol, EMProtocol):
    """Trains a YOLO detector (ultralytics) to pick particles, from a few
    micrographs with coordinates: one SetOfCoordinates per view class (for
    example top and side views). Micrographs are first brought to a working
    size and contrast-restored (wavelet, Wiener filter, CLAHE), as in the
    YOLOv5 KLH picking study, or only background-flattened: by default both
    are trained and the picker that validates better is kept. The output
    model feeds the YOLO picking protocol."""
    _label = "yolo training"
    _devStatus = BETA
    _possibleOutputs = {OUTPUT_MODEL: CryoPruneYoloModel}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMicrographs", params.PointerParam,
                      pointerClass="SetOfMicrographs", important=True,
                      label="Micrographs",
                      help="Micrographs with annotated particles; micrographs "
                           "without coordinates are skipped. 3 to 10 annotated "
                           "micrographs are a good start.")
        form.addParam("inputCoordinates", params.MultiPointerParam,
                      pointerClass="SetOfCoordinates", minNumObjects=1, important=True,
                      label="Coordinates (one set per view class)",
                      help="One SetOfCoordinates per view class, e.g. the top views "
                           "and the side views; a single set trains a one-class "
                           "detector. Annotate every particle of an annotated "
                           "micrograph: the ones left out teach the detector to "
                           "miss them.")
        form.addParam("classNames", params.StringParam, default="",
                      label="View class names",
                      help="Comma-separated names of the view classes, in the order "
                           "of the coordinate sets (e.g. 'top,side'). Letters, digits "
                           "and underscores. Empty (the start): each set named after "
                           "its label, else the output it is (outputCoordinates_top: "
                           "top), else the run that made it; numbered when two are "
                           "the same.")
        form.addParam("boxSize", params.IntParam, allowsNull=True,
                      label="Box size (px)",
                      help="Size of the boxes drawn around the particles, in "
                           "micrograph pixels: about the particle diameter plus a "
                           "margin. Empty (the start): the box size of the first "
                           "coordinate set. The model remembers it for picking.")
        form.addParam("valFraction", params.FloatParam, default=PickerTraining.val_fraction,
                      validators=[params.Range(0.0, 0.9)],
                      label="Validation fraction",
                      help="Width of the strip of each annotated micrograph kept apart "
                           "(along one side, a different side from one micrograph to "
                           "the next). On the strips, precision, recall and mAP are "
                           "measured after each epoch, and after the last a "
                           "confidence threshold is chosen (within the extent of each "
                           "strip's annotations: of those within one standard error of "
                           "the best F1, the one nearest %s) and stored in the model "
                           "for picking. %s to start; 0 trains on all of each "
                           "micrograph and stores no threshold (picking starts at "
                           "%s), as when the strips would hold fewer than %d annotated "
                           "particles. The last epoch's weights are kept either way."
                           % (Detection.threshold, PickerTraining.val_fraction,
                              Detection.threshold,
                              VALIDATION_MIN_PARTICLES))

        form.addSection(label="Training")
        form.addParam("modelFamily", params.EnumParam, choices=YOLO_FAMILIES,
                      default=YOLO_FAMILIES.index(PickerTraining.model[:-1]),
                      label="Model family",
                      help="The ultralytics detector generation: yolov8 (the start) "
                           "or yolo11; both work on micrographs.")
        form.addParam("modelSize", params.EnumParam, choices=YOLO_SIZES,
                      default=YOLO_SIZES.index(PickerTraining.model[-1]),
                      display=params.EnumParam.DISPLAY_HLIST, label="Model size",
                      help="n (nano, the start, fastest) to x (largest). Larger models "
                           "need more annotated micrographs and a GPU.")
        form.addParam("initialWeights", params.PathParam, default="",
                      label="Initial weights (optional)",
                      help="A local ultralytics .pt file to start from, e.g. COCO "
                           "weights of the same family and size, or a picker trained "
                           "on similar data. Nothing is downloaded; empty (the "
                           "start) trains from scratch.")
        form.addParam("epochs", params.IntParam, default=PickerTraining.epochs,
                      validators=[params.Positive], label="Epochs",
                      help="Most passes over the training tiles; early stopping "
                           "usually ends sooner. %d to start." % PickerTraining.epochs)
        form.addParam("batchSize", params.IntParam, default=PickerTraining.batch,
                      validators=[params.Positive], label="Batch size",
                      help="Tiles per training step; %d to start, more on a large "
                           "GPU." % PickerTraining.batch)
        form.addParam("patience", params.IntParam, default=PickerTraining.patience,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Early-stopping patience",
                      help="Stop when the validation fitness has not improved for "
                           "this many epochs.")
        form.addParam("learningRate", params.FloatParam,
                      default=PickerTraining.learning_rate,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Learning rate",
                      help="Initial AdamW learning rate; %s to start."
                           % PickerTraining.learning_rate)
        form.addParam("tileSize", params.IntParam, default=PickerTraining.tile,
                      validators=[params.GE(0)], expertLevel=params.LEVEL_ADVANCED,
                      label="Training tile size (px)",
                      help="Training sees square tiles of the working image, a "
                           "multiple of 32 px; picking runs on whole working images "
                           "at the same scale. 0 (the start): room for four boxes, "
                           "at least 256 px.")
        form.addParam("augment", params.BooleanParam, default=True,
                      expertLevel=params.LEVEL_ADVANCED, label="Augmentation",
                      help="Any in-plane rotation, flips, small shifts and scale "
                           "changes, brightness, mosaics of four tiles. Yes to start: "
                           "a few micrographs need it.")
        form.addParam("seed", params.IntParam, default=PickerTraining.seed,
                      expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seeds the validation split and the augmentation: the "
                           "same seed repeats a run.")

        form.addSection(label="Preprocessing")
        form.addParam("doPreprocess", params.BooleanParam, default=True,
                      label="Restore contrast",
                      help="Wavelet, Wiener filter and CLAHE before training, as in "
                           "the YOLOv5 KLH picking study; Yes to start. No: only "
                           "resize, flatten the background (ice, carbon) and "
                           "normalise on the micrograph's interior; picks better on "
                           "already denoised micrographs, but tells views apart "
                           "worse on raw ones (BENCHMARKS.md). Picking repeats what "
                           "training did.")
        form.addParam("choosePreprocessing", params.BooleanParam, default=True,
                      condition="doPreprocess", label="Choose by validation",
                      help="Yes (the start): train with the filters below and with "
                           "Restore contrast No, and keep the picker whose validation "
                           "strips score the higher view F1 (a pick of the wrong view "
                           "counts as false; the filters on a tie). Neither wins "
                           "everywhere (BENCHMARKS.md); No halves the training time. "
                           "The choice and both scores are in the summary. Without "
                           "validation strips (validation fraction 0, or too few "
                           "annotated particles in them) the filters' picker is kept, "
                           "after one training.")
        form.addParam("workingSize", params.IntParam, default=PREPROCESS.working_size,
                      validators=[params.GE(0)], label="Working size (px)",
                      help="Long side of the micrographs after resizing, at least "
                           "(see Working box). %d to start; 0 keeps their size. "
                           "Coordinates map back exactly." % PREPROCESS.working_size)
        form.addParam("workingBox", params.IntParam, default=PREPROCESS.working_box,
                      validators=[params.GE(0)], expertLevel=params.LEVEL_ADVANCED,
                      label="Working box (px)",
                      help="The working size is raised, up to the micrographs' own, "
                           "until the particle box spans this many working pixels, so "
                           "that small particles are not shrunk out of sight. %d to "
                           "start; 0 keeps the working size fixed. 64 picks "
                           "beta-galactosidase better than 32 (F1 +0.009, AP +0.014: a "
                           "box of 128 px on 4096 px micrographs at 2048 px instead of "
                           "1024) for 4.6 times the training and 3 times the picking "
                           "time on the CPU (BENCHMARKS.md, \"Working scale\")."
                           % PREPROCESS.working_box)
        form.addParam("doWavelet", params.BooleanParam, default=bool(PREPROCESS.wavelet),
                      condition="doPreprocess", expertLevel=params.LEVEL_ADVANCED,
                      label="Wavelet detail suppression",
                      help="Remove the finest wavelet details, mostly noise.")
        form.addParam("wavelet", params.StringParam, default=PREPROCESS.wavelet,
                      condition="doPreprocess and doWavelet",
                      expertLevel=params.LEVEL_ADVANCED, label="Wavelet",
                      help="A discrete wavelet of PyWavelets, e.g. %s (the start) or "
                           "sym8." % PREPROCESS.wavelet)
        form.addParam("waveletLevels", params.IntParam, default=PREPROCESS.wavelet_levels,
                      validators=[params.Positive], condition="doPreprocess and doWavelet",
                      expertLevel=params.LEVEL_ADVANCED, label="Wavelet levels",
                      help="Decomposition levels whose details are suppressed; %d "
                           "to start, more smooths more." % PREPROCESS.wavelet_levels)
        form.addParam("waveletMode", params.EnumParam, choices=list(WAVELET_MODES),
                      default=list(WAVELET_MODES).index(PREPROCESS.wavelet_mode),
                      display=params.EnumParam.DISPLAY_HLIST,
                      condition="doPreprocess and doWavelet",
                      expertLevel=params.LEVEL_ADVANCED, label="Wavelet details",
                      help="remove (the start): drop the detail coefficients (the "
                           "paper); soft: soft-threshold them at the noise level.")
        form.addParam("doWiener", params.BooleanParam, default=bool(PREPROCESS.wiener_size),
                      condition="doPreprocess", expertLevel=params.LEVEL_ADVANCED,
                      label="Wiener filter", help="Adaptive local noise filter.")
        form.addParam("wienerSize", params.IntParam, default=PREPROCESS.wiener_size,
                      condition="doPreprocess and doWiener",
                      expertLevel=params.LEVEL_ADVANCED, label="Wiener window (px)",
                      help="Odd window size in working pixels; %d to start, about "
                           "a quarter of the particle." % PREPROCESS.wiener_size)
        form.addParam("doClahe", params.BooleanParam, default=bool(PREPROCESS.clahe_tiles),
                      condition="doPreprocess", expertLevel=params.LEVEL_ADVANCED,
                      label="CLAHE",
                      help="Contrast-limited adaptive histogram equalisation: evens "
                           "out the contrast across the micrograph.")
        form.addParam("claheTiles", params.IntParam, default=PREPROCESS.clahe_tiles,
                      validators=[params.Positive], condition="doPreprocess and doClahe",
                      expertLevel=params.LEVEL_ADVANCED, label="CLAHE tiles per side",
                      help="The micrograph is equalised in this many tiles per side; "
                           "%d to start." % PREPROCESS.clahe_tiles)
        form.addParam("claheClip", params.FloatParam, default=PREPROCESS.clahe_clip,
                      condition="doPreprocess and doClahe",
                      expertLevel=params.LEVEL_ADVANCED, label="CLAHE clip limit",
                      help="Limits the contrast gain (0 to 1); %s to start, higher "
                           "amplifies noise more." % PREPROCESS.clahe_clip)
        form.addParam("doNormalize", params.BooleanParam, default=PREPROCESS.normalize,
                      expertLevel=params.LEVEL_ADVANCED, label="Normalise",
                      help="Zero mean, unit standard deviation; Yes to start.")

        self._defineComputeParams(form, "training", threads=4,
                                  severalGpus="data-parallel training")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.trainStep)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        """Coordinates to per-micrograph CSVs (x, y, class) and links to the
        micrographs that have coordinates."""
        mics = {mic.getObjId(): mic.clone() for mic in self.inputMicrographs.get()}
        counts = writeCoordinatesCsv(self._getCoordinateSets(), self._getClassNames(),
                                     self._getCoordsDir(), self._getMicNames())
        annotated = [mics[micId] for micId in sorted(counts)]
        pwutils.cleanPath(self._getMicsDir())
        linkMicrographs(annotated, self._getMicsDir())
        self.info("%d of %d micrographs have coordinates (%d in all)"
                  % (len(annotated), len(mics), sum(counts.values())))

    def trainStep(self):
        """Continue resumes the training that a failed or stopped run saved
        in the model folder."""
        micFiles = sorted(os.path.join(self._getMicsDir(), name)
                          for name in os.listdir(self._getMicsDir()))
        args = ["--micrographs %s" % " ".join(micFiles),
                "--coords %s" % self._getCoordsDir(),
                "--box %d" % self._getBoxSize(),
                "--out %s" % self._getModelDir(), "--resume",
                "--classes %s" % ",".join(self._getClassNames()),
                "--model %s%s" % (self.getEnumText("modelFamily"),
                                  self.getEnumText("modelSize")),
                "--epochs %d" % self.epochs, "--patience %d" % self.patience,
                "--batch %d" % self.batchSize, "--lr %s" % self.learningRate,
                "--val-fraction %s" % self.valFraction,
                "--seed %d" % self.seed]
        if self.tileSize.get():
            args.append("--tile %d" % self.tileSize)
        if self.initialWeights.get():
            args.append("--initial-weights %s" % os.path.abspath(self.initialWeights.get()))
        if not self.augment:
            args.append("--no-augment")
        args.extend(self._getPreprocessArgs())
        self.runCryoprune("train-picker", " ".join(args))

    def createOutputStep(self):
        model = CryoPruneYoloModel(filename=self._getModelDir(MODEL_WEIGHTS))
        metadata = model.getMetadata()
        preprocessing = metadata.get("preprocessing", {})
        model.setClassNames(metadata["classes"])
        model.setBoxSize(metadata.get("box_size", self._getBoxSize()))
        model.setWorkingSize(max(metadata.get("working_shape")
                                 or [preprocessing.get("working_size", self.workingSize.get())]))
        model.setPreprocessing(preprocessing)
        self._defineOutputs(**{OUTPUT_MODEL: model})
        self._defineSourceRelation(self.inputMicrographs, model)
        for pointer in self.inputCoordinates:
            self._defineSourceRelation(pointer, model)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        coordSets = self._getCoordinateSets()
        if self.inputMicrographs.get() is None or not coordSets or None in coordSets:
            return []  # pyworkflow reports the missing inputs
        errors = []
        names = self._getClassNames()
        if len(names) != len(coordSets):
            errors.append("%d view class names (%s) for %d coordinate sets: give one "
                          "name per set, in the same order"
                          % (len(names), ",".join(names), len(coordSets)))
        bad = [n for n in names if not NAME_PATTERN.match(n)]
        if bad:
            errors.append("Invalid view class names %s: use letters, digits and "
                          "underscores, starting with a letter" % ", ".join(bad))
        if len(set(names)) != len(names):
            errors.append("View class names must differ, found %s" % ",".join(names))
        errors.extend(self._validateCoordinates(coordSets))
        errors.extend(self._validateBoxSize())
        weights = self.initialWeights.get()
        if weights and not os.path.isfile(weights):
            errors.append("Initial weights file %s not found: give an existing "
                          "ultralytics .pt file or leave it empty" % weights)
        if self.doPreprocess and self.doWavelet:
            import pywt
            if self.wavelet.get().strip() not in pywt.wavelist(kind="discrete"):
                errors.append("Unknown wavelet '%s': use a discrete wavelet of "
                              "PyWavelets such as db15 or sym8" % self.wavelet.get())
        if self.doPreprocess and self.doWiener and self.wienerSize.get() % 2 == 0:
            errors.append("The Wiener window must be odd, found %d" % self.wienerSize)
        if self.tileSize.get() % 32:
            errors.append("The training tile size must be a multiple of 32 px, found %d"
                          % self.tileSize)
        return errors

    def _validateCoordinates(self, coordSets):
        errors = []
        mics = self._getMicNames()
        for pointer, coordSet in zip(self.inputCoordinates, coordSets):
            label = describeInput(pointer)
            if coordSet.getSize() == 0:
                errors.append("Coordinate set %s is empty: pick or import "
                              "coordinates first, or remove it" % label)
            elif not any(isOnMicrograph(micId, micName, mics)
                         for micId, micName in micrographKeys(coordSet)):
                errors.append("No coordinate of %s lies on the input micrographs: "
                              "use the micrographs these coordinates were picked on"
                              % label)
        return errors

    def _validateBoxSize(self):
        boxSize = self._getBoxSize()
        if not boxSize or boxSize <= 0:
            return ["No box size: the coordinates have none, give one in the form"]
        width, height, _ = self.inputMicrographs.get().getDim()
        if boxSize > min(width, height):
            return ["Box size %d px is larger than the micrographs (%d x %d px): "
                    "give the box in micrograph pixels" % (boxSize, width, height)]
        return []

    def _warnings(self):
        warnings = CryoPruneProtocol._warnings(self)
        if self.inputMicrographs.get() is None or None in self._getCoordinateSets():
            return warnings
        mics = self._getMicNames()
        return warnings + ["%s has coordinates on micrographs that are not in the input; "
                           "they are ignored" % describeInput(pointer)
                           for pointer in self.inputCoordinates
                           if not all(isOnMicrograph(micId, micName, mics)
                                      for micId, micName in micrographKeys(pointer.get()))]

    def _summary(self):
        if not self.hasAttribute(OUTPUT_MODEL):
            return ["Training not finished yet."]
        metadata = getattr(self, OUTPUT_MODEL).getMetadata()
        metrics = metadata.get("final_metrics", {})
        summary = ["View classes: %s" % ", ".join(metadata["classes"]),
                   describeSplit(metadata), describeThreshold(metadata)]
        choice = describePreprocessingChoice(metadata)
        if choice:
            summary.append(choice)
        if metrics:
            summary.append("Validation: precision %.3f, recall %.3f, mAP50 %.3f, "
                           "mAP50-95 %.3f" % (metrics["precision"], metrics["recall"],
                                              metrics["mAP50"], metrics["mAP50-95"]))
        return summary

    def _methods(self):
        if not self.hasAttribute(OUTPUT_MODEL):
            return []
        return ["A YOLO particle detector (ultralytics %s%s %s) was trained on %s with "
                "the view classes %s, box size %d px, working size %d px, for at most "
                "%d epochs." % (self.getEnumText("modelFamily"),
                                self.getEnumText("modelSize"),
                                reference("Jocher2023Ultralytics"),
                                self.getObjectTag("inputMicrographs"),
                                ", ".join(self._getClassNames()), self._getBoxSize(),
                                getattr(self, OUTPUT_MODEL).getWorkingSize(), self.epochs)]

    def _citations(self):
        return ["Jocher2023Ultralytics"]

    # --------------------------- UTILS functions -----------------------------
    def _getCoordinateSets(self):
        return [pointer.get() for pointer in self.inputCoordinates]

    def _getClassNames(self):
        names = [n.strip() for n in self.classNames.get("").split(",") if n.strip()]
        return names or namesFromInputs(self.inputCoordinates, "class")

    def _getMicNames(self):
        """{micId: micName} of the input micrographs."""
        return {mic.getObjId(): mic.getMicName() for mic in self.inputMicrographs.get()}

    def _getBoxSize(self):
        if self.boxSize.get():
            return self.boxSize.get()
        return self._getCoordinateSets()[0].getBoxSize()

    def _getPreprocessArgs(self):
        args = ["--working-size %d" % self.workingSize, "--working-box %d" % self.workingBox]
        if not self.doNormalize:
            args.append("--no-normalize")
        if not self.doPreprocess:
            return args + ["--no-preprocess"]
        if self.choosePreprocessing:
            args.append("--choose-preprocessing")
        if self.doWavelet:
            args += ["--wavelet %s" % self.wavelet.get().strip(),
                     "--wavelet-levels %d" % self.waveletLevels,
                     "--wavelet-mode %s" % self.getEnumText("waveletMode")]
        else:
            args.append("--wavelet none")
        args.append("--wiener %d" % (self.wienerSize.get() if self.doWiener else 0))
        if self.doClahe:
            args += ["--clahe-tiles %d" % self.claheTiles,
                     "--clahe-clip %s" % self.claheClip]
        else:
            args.append("--clahe-tiles 0")
        return args

    def _getCoordsDir(self):
        return self._getExtraPath("coordinates")

    def _getMicsDir(self):
        return self._getExtraPath("micrographs")

    def _getModelDir(self, *paths):
        return self._getExtraPath("model", *paths)
