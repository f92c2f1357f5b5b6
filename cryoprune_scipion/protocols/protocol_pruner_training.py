"""Training of the PickerOptimizer particle/junk classifier."""
import glob
import json
import os

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pyworkflow import BETA
from pwem.objects import SetOfCoordinates
from pwem.protocols import EMProtocol

from .. import Plugin
from ..constants import BASE_PRUNER_DIR, EDGE_CLASS, MODEL_WEIGHTS
from ..convert import readParticleIds, writeCoordinateExtraction, writeParticleTable
from ..engine.pruning import MIN_CLASS_EXAMPLES, PARTICLE, TrainSettings
from ..objects import CryoPrunePrunerModel
from .base import CryoPruneProtocol, reference
from .class_names import NAME_PATTERN, namesFromInputs

OUTPUT_MODEL = "outputModel"
BACKBONES = ["resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
             "mobilenet_v3_large", "efficientnet_b0", "densenet121"]
INIT_SCRATCH, INIT_IMAGENET, INIT_MODEL, INIT_AUTOMATIC = 0, 1, 2, 3
VALIDATION_FILE = "validation.json"

# Labels the pruning gives besides the junk classes: no junk class may take them
RESERVED_NAMES = (PARTICLE, EDGE_CLASS)


def backboneWeights(backbone):
    """The ImageNet weights of a torchvision backbone in the plugin's model
    folder, as `scipion3 installb cryoprune-models` (torch hub layout) or the
    user put them there; None when absent."""
    found = sorted(glob.glob(Plugin.getModelsDir("hub", "checkpoints", backbone + "-*.pth"))
                   + glob.glob(Plugin.getModelsDir(backbone + "*.pth")))
    return found[0] if found else None


def canMake(path):
    """Whether `path` exists or can be made: its first existing folder is
    writable."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.access(path, os.W_OK | os.X_OK)


def writeWindowInput(protocol, inputSet, items, windowsDir, inputDir, boxSize):
    """The windows of `items` of a SetOfParticles or SetOfCoordinates as a
    folder that train-pruner and prune read: particles by links to their own
    stacks; coordinates by a `cryoprune extract` job (the micrographs and
    coordinate tables written to `inputDir`). Both are downsampled by the
    job that reads them, so particles and coordinates go through the same
    Fourier crop. Returns the ids of the items in window order; a
    coordinate whose box crosses the micrograph edge has no window."""
    if not isinstance(inputSet, SetOfCoordinates):
        writeParticleTable(items, windowsDir)
        return readParticleIds(windowsDir)
    micrographs = writeCoordinateExtraction(items, inputSet.getMicrographs(), inputDir)
    protocol.runCryoprune("extract", "--micrographs %s --coords %s --box %d --out %s"
                          % (" ".join(micrographs), os.path.join(inputDir, "coordinates"),
                             boxSize, windowsDir))
    return readParticleIds(windowsDir)


def windowBox(inputSet, boxSize):
    """Window size in input pixels: the particle size, or the box size given
    for coordinates (the coordinates' own when not given)."""
    if isinstance(inputSet, SetOfCoordinates):
        return boxSize or inputSet.getBoxSize()
    return inputSet.getDimensions()[0]


class CryoPruneProtPickerOptimizerTraining(CryoPruneProtocol, EMProtocol):
    """Trains a PickerOptimizer classifier (Li et al. 2022) that tells true
    particles from false picks: good examples (particles or coordinates)
    against one or more sets of bad examples, each a junk class (ice,
    carbon, aggregate, background...). A ResNet-style CNN with an auxiliary
    loss branch is fine-tuned from local ImageNet weights, from a pruner
    trained earlier, or trained from scratch. The model feeds the
    PickerOptimizer pruning protocol."""
    _label = "picker optimizer training"
    _devStatus = BETA
    _possibleOutputs = {OUTPUT_MODEL: CryoPrunePrunerModel}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputGood", params.PointerParam,
                      pointerClass="SetOfParticles,SetOfCoordinates", important=True,
                      label="Good examples",
                      help="True particles, centred: a SetOfParticles, or a "
                           "SetOfCoordinates whose windows are cut from its "
                           "micrographs. Start with a few hundred, e.g. the "
                           "coordinates you annotated for the picker.")
        form.addParam("inputBad", params.MultiPointerParam,
                      pointerClass="SetOfParticles,SetOfCoordinates", minNumObjects=1,
                      important=True, label="Bad examples (one set per junk class)",
                      help="False picks, one set per junk class (e.g. ice, carbon, "
                           "aggregates, empty background); one set for plain junk. "
                           "At least %d of each; a hundred or more is better."
                           % MIN_CLASS_EXAMPLES)
        form.addParam("junkNames", params.StringParam, default="",
                      label="Junk class names",
                      help="Comma-separated names of the junk classes, in the order "
                           "of the bad sets (e.g. 'ice,carbon'). Empty (the start): "
                           "each set named after its label, else the output it is "
                           "(outputCoordinates_ice: ice), else the run that made it; "
                           "letters, digits and underscores, numbered when two are "
                           "the same.")
        form.addParam("boxSize", params.IntParam, allowsNull=True,
                      label="Box size (px)",
                      help="Window cut around each coordinate, in micrograph pixels; "
                           "about 1.5 particle diameters. Empty (the start): the "
                           "coordinates' box size. Particle images keep their size. "
                           "The model remembers it for pruning.")
        form.addParam("downFactor", params.FloatParam, default=1.0,
                      validators=[params.GE(1.0)], label="Downsampling factor",
                      help="Windows are Fourier-cropped by this factor before "
                           "training; the model remembers it for pruning. 1 keeps "
                           "them; 2-3 makes training on the CPU much faster, as long "
                           "as the particle stays 20 px or more across.")

        form.addSection(label="Training")
        form.addParam("initialWeights", params.EnumParam, default=INIT_AUTOMATIC,
                      choices=["from scratch", "ImageNet (model folder)",
                               "earlier pruner model", "automatic"],
                      label="Initial weights",
                      help="Automatic (the start): the backbone's ImageNet weights "
                           "when they are in the plugin's model folder, otherwise the "
                           "base pruner, a network pretrained on simulated micrograph "
                           "windows (particles, ice, carbon, aggregates, empty "
                           "background); made once by this protocol in the model "
                           "folder (about a minute on a CPU for ResNet-18), or "
                           "beforehand with `scipion3 installb cryoprune-models`. "
                           "ImageNet: the backbone's weights in the model folder "
                           "(installed by `scipion3 installb cryoprune-models`). "
                           "Earlier pruner: continue from the output of a previous "
                           "training. Nothing is downloaded.")
        form.addParam("inputModel", params.PointerParam, pointerClass="CryoPrunePrunerModel",
                      condition="initialWeights == %d" % INIT_MODEL, allowsNull=True,
                      label="Pruner model to start from",
                      help="A model made by an earlier run of this protocol; its "
                           "backbone is used.")
        form.addParam("backbone", params.EnumParam, choices=BACKBONES,
                      default=BACKBONES.index(TrainSettings.backbone),
                      condition="initialWeights != %d" % INIT_MODEL,
                      label="Backbone",
                      help="The torchvision network under the classifier; ResNet-18 "
                           "(the start) as in the PickerOptimizer paper. Larger ones "
                           "need more examples and a GPU.")
        form.addParam("inputSize", params.IntParam, default=TrainSettings.input_size,
                      validators=[params.GE(32)], label="Network input (px)",
                      help="Windows are resized to this size; %d px as in the paper. "
                           "64-112 px train much faster, on a CPU too."
                           % TrainSettings.input_size)
        form.addParam("epochs", params.IntParam, default=TrainSettings.epochs,
                      validators=[params.Positive], label="Epochs",
                      help="Passes over all training windows; the epoch with the "
                           "best validation loss is kept. %d to start; fewer when "
                           "starting from an earlier pruner." % TrainSettings.epochs)
        form.addParam("batchSize", params.IntParam, default=TrainSettings.batch,
                      validators=[params.Positive], label="Batch size",
                      help="Windows per training step; lower it when the GPU runs "
                           "out of memory.")
        form.addParam("valFraction", params.FloatParam, default=TrainSettings.val_fraction,
                      validators=[params.Range(0.0, 0.9)], label="Validation fraction",
                      help="Fraction of each class kept apart to choose the best epoch "
                           "and report accuracy, precision, recall, F1; 0.2 to start.")
        form.addParam("fewShot", params.IntParam, default=TrainSettings.few_shot,
                      validators=[params.GE(0)], expertLevel=params.LEVEL_ADVANCED,
                      label="Examples per class (few-shot)",
                      help="Use at most this many examples of each class, e.g. to "
                           "balance a huge class; 0 (the start) uses all.")
        form.addParam("learningRate", params.FloatParam, default=TrainSettings.learning_rate,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Learning rate",
                      help="Initial Adam learning rate; %s to start, 10 times lower "
                           "to fine-tune an earlier pruner." % TrainSettings.learning_rate)
        form.addParam("auxWeight", params.FloatParam, default=TrainSettings.aux_weight,
                      validators=[params.GE(0.0)], expertLevel=params.LEVEL_ADVANCED,
                      label="Auxiliary loss weight",
                      help="Weight of the second branch's loss (the paper's "
                           "multi-loss), %s to start; 0 trains the main classifier "
                           "alone." % TrainSettings.aux_weight)
        form.addParam("seed", params.IntParam, default=TrainSettings.seed,
                      expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seeds the validation split, the augmentation and the "
                           "initial weights: the same seed repeats a run.")
        self._defineComputeParams(form, "training", threads=2)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        for name in self._getClassNames():
            self._insertFunctionStep(self.windowsStep, name)
        if self.initialWeights == INIT_AUTOMATIC:
            self._insertFunctionStep(self.basePrunerStep)
        self._insertFunctionStep(self.trainStep)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def windowsStep(self, name):
        """The windows of one class (the good examples, or a junk class) in
        a folder named after it; cut by a `cryoprune extract` job for
        coordinates."""
        inputSet = dict(zip(self._getClassNames(), self._getInputSets()))[name]
        windowsDir = self._getWindowsDir(name)
        pwutils.cleanPath(windowsDir)
        items = [item.clone() for item in inputSet.iterItems(orderBy="id")]
        ids = writeWindowInput(self, inputSet, items, windowsDir,
                               self._getExtraPath("input", name),
                               windowBox(inputSet, self.boxSize.get()))
        self.info("%s: %d windows of %d items (boxes crossing the micrograph edge left "
                  "out)" % (name, len(ids), len(items)))

    def basePrunerStep(self):
        """Make the base pruner of the backbone when automatic initial
        weights find neither ImageNet weights nor a base pruner made before."""
        weights = self._getInitialWeightsFile()
        if os.path.isfile(weights):
            self.info("Initial weights: %s" % weights)
            return
        self.info("No ImageNet weights of %s in %s: making the base pruner first"
                  % (self._getBackbone(), Plugin.getModelsDir()))
        self.runCryoprune("base-pruner", "--out %s --backbone %s"
                          % (self._getBasePrunerDir(), self._getBackbone()))

    def trainStep(self):
        """Continue resumes the training that a failed or stopped run saved
        in the model folder."""
        args = ["--good %s" % self._getWindowsDir(PARTICLE)]
        args += ["--bad %s" % self._getWindowsDir(name) for name in self._getJunkNames()]
        args += ["--downsample %s" % self.downFactor, "--out %s" % self._getModelDir(), "--resume", "--epochs %d" % self.epochs,
                 "--backbone %s" % self._getBackbone(), "--input-size %d" % self.inputSize,
                 "--few-shot %d" % self.fewShot, "--lr %s" % self.learningRate,
                 "--batch %d" % self.batchSize, "--val-fraction %s" % self.valFraction,
                 "--aux-weight %s" % self.auxWeight, "--seed %d" % self.seed]
        weights = self._getInitialWeightsFile()
        if weights:
            args.append("--initial-weights %s" % os.path.abspath(weights))
        self.runCryoprune("train-pruner", " ".join(args))

    def createOutputStep(self):
        model = CryoPrunePrunerModel(filename=self._getModelDir(MODEL_WEIGHTS))
        metadata = model.getMetadata()
        model.setClassNames(metadata["classes"])
        model.setBoxSize(windowBox(self.inputGood.get(), self.boxSize.get()))
        model.setDownFactor(self.downFactor.get())
        model.setWindowSize(metadata["box_size"])
        with open(self._getExtraPath(VALIDATION_FILE), "w") as f:
            json.dump(metadata.get("validation", {}), f, indent=1)
        self._defineOutputs(**{OUTPUT_MODEL: model})
        self._defineSourceRelation(self.inputGood, model)
        for pointer in self.inputBad:
            self._defineSourceRelation(pointer, model)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        badSets = [pointer.get() for pointer in self.inputBad]
        if self.inputGood.get() is None or not badSets or None in badSets:
            return []  # pyworkflow reports the missing inputs
        errors = []
        names = self._getJunkNames()
        if len(names) != len(badSets):
            errors.append("%d junk class names (%s) for %d bad sets: give one name per "
                          "set, in the same order" % (len(names), ",".join(names),
                                                      len(badSets)))
        bad = [n for n in names if not NAME_PATTERN.match(n) or n in RESERVED_NAMES]
        if bad:
            errors.append("Invalid junk class names %s: use letters, digits and "
                          "underscores, starting with a letter, other than %s"
                          % (", ".join(bad), " and ".join(map(repr, RESERVED_NAMES))))
        if len(set(names)) != len(names):
            errors.append("Junk class names must differ, found %s" % ",".join(names))
        for label, inputSet in [("Good examples", self.inputGood.get())] + \
                list(zip(names, badSets)):
            if inputSet.getSize() < MIN_CLASS_EXAMPLES:
                errors.append("%s (%s) has %d examples: each class needs at least %d"
                              % (label, inputSet.getObjLabel() or inputSet.getClassName(),
                                 inputSet.getSize(), MIN_CLASS_EXAMPLES))
            elif not windowBox(inputSet, self.boxSize.get()):
                errors.append("%s: the coordinates have no box size; give one in the form"
                              % label)
        sizes = {self._windowSize(s) for s in [self.inputGood.get()] + badSets}
        if len(sizes) > 1:
            errors.append("The inputs give windows of different sizes %s px: use "
                          "particles of one box size, or coordinates with the box size "
                          "of the form" % sorted(sizes))
        if 0 < self.fewShot.get() < MIN_CLASS_EXAMPLES:
            errors.append("Examples per class (few-shot) is %d: use at least %d, or 0 "
                          "for all" % (self.fewShot.get(), MIN_CLASS_EXAMPLES))
        errors.extend(self._validateInitialWeights())
        return errors

    def _validateInitialWeights(self):
        if self.initialWeights == INIT_IMAGENET and not self._getInitialWeightsFile():
            return ["No ImageNet weights of %s in %s. Install them with `scipion3 "
                    "installb cryoprune-models`, or put torchvision's %s-*.pth file "
                    "there, or choose 'automatic'"
                    % (self._getBackbone(), Plugin.getModelsDir(), self._getBackbone())]
        if self.initialWeights == INIT_MODEL:
            model = self.inputModel.get()
            if model is None:
                return ["Choose the pruner model to start from"]
            if not os.path.isfile(model.getFileName()):
                return ["The pruner model file %s is missing: run its training "
                        "again" % model.getFileName()]
        return []

    def _summary(self):
        if not self.hasAttribute(OUTPUT_MODEL):
            return ["Training not finished yet."]
        metadata = getattr(self, OUTPUT_MODEL).getMetadata()
        summary = ["Classes: %s" % ", ".join(metadata["classes"]),
                   "Training windows per class: %s, %d px, backbone %s, input %d px"
                   % (metadata["n_train"], metadata["box_size"], metadata["backbone"],
                      metadata["input_size"]),
                   "Initial weights: %s" % (metadata.get("initial_weights")
                                            or "none (trained from scratch)")]
        validation = metadata.get("validation")
        if validation:
            summary.append("Validation (%d windows, particle vs junk): accuracy %.3f, "
                           "precision %.3f, recall %.3f, F1 %.3f, ROC AUC %.3f"
                           % (validation["n"], validation["accuracy"],
                              validation["precision"], validation["recall"],
                              validation["f1"], validation["roc_auc"]))
            summary.append("Confusion matrix (rows true, columns predicted %s): %s"
                           % (",".join(validation["classes"]), validation["confusion"]))
        return summary

    def _methods(self):
        if not self.hasAttribute(OUTPUT_MODEL):
            return []
        return ["A PickerOptimizer classifier %s (%s backbone with an auxiliary loss "
                "branch of weight %s, input %d px) was trained to separate particles of "
                "%s from the junk classes %s, for %d epochs."
                % (reference("Li2022PickerOptimizer"), self._getBackbone(), self.auxWeight,
                   self.inputSize, self.getObjectTag("inputGood"), ", ".join(self._getJunkNames()),
                   self.epochs)]

    def _citations(self):
        return ["Li2022PickerOptimizer"]

    # --------------------------- UTILS functions -----------------------------
    def _getClassNames(self):
        return [PARTICLE] + self._getJunkNames()

    def _getInputSets(self):
        return [self.inputGood.get()] + [pointer.get() for pointer in self.inputBad]

    def _getJunkNames(self):
        names = [n.strip() for n in self.junkNames.get("").split(",") if n.strip()]
        return names or namesFromInputs(self.inputBad, "junk", reserved=RESERVED_NAMES)

    def _windowSize(self, inputSet):
        from ..engine.windows import downsampled_box
        return downsampled_box(windowBox(inputSet, self.boxSize.get()) or 2,
                               self.downFactor.get())

    def _getBackbone(self):
        if self.initialWeights == INIT_MODEL and self.inputModel.get() is not None:
            return self.inputModel.get().getMetadata()["backbone"]
        return self.getEnumText("backbone")

    def _getInitialWeightsFile(self):
        if self.initialWeights == INIT_AUTOMATIC:
            return (backboneWeights(self._getBackbone())
                    or self._getBasePrunerDir(MODEL_WEIGHTS))
        if self.initialWeights == INIT_IMAGENET:
            return backboneWeights(self._getBackbone())
        if self.initialWeights == INIT_MODEL:
            return self.inputModel.get().getFileName()
        return None

    def _getBasePrunerDir(self, *paths):
        """The base pruner of the backbone in the plugin's model folder, made
        once for all runs; this run's own when that folder is read-only."""
        shared = Plugin.getBasePrunerDir(self._getBackbone())
        if os.path.isfile(os.path.join(shared, MODEL_WEIGHTS)) or canMake(shared):
            return os.path.join(shared, *paths)
        return self._getExtraPath(BASE_PRUNER_DIR, *paths)

    def _getWindowsDir(self, *paths):
        return self._getExtraPath("windows", *paths)

    def _getModelDir(self, *paths):
        return self._getExtraPath("model", *paths)
