"""Training of the PickerOptimizer particle/junk classifier."""
import collections
import glob
import json
import os

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pyworkflow import BETA
from pwem.objects import SetOfCoordinates
from pwem.protocols import EMProtocol

from .. import Plugin
from ..constants import BASE_PRUNER_DIR, EDGE_CLASS, JUNK_CLASS_ATTR, MODEL_WEIGHTS
from ..convert import (mergeWindowFolders, readParticleIds, writeCoordinateExtraction,
                       writeParticleTable)
from ..engine.pruning import (IMAGENET_INPUT_SIZE, MIN_CLASS_EXAMPLES, PARTICLE,
                              SCRATCH_INPUT_SIZE, TrainSettings)
from ..objects import CryoPrunePrunerModel
from .base import CryoPruneProtocol, OptionalRange, reference
from .class_names import NAME_PATTERN, namesFromInputs

OUTPUT_MODEL = "outputModel"
BACKBONES = ["resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
             "mobilenet_v3_large", "efficientnet_b0", "densenet121"]
INIT_SCRATCH, INIT_IMAGENET, INIT_MODEL, INIT_AUTOMATIC, INIT_BASE = 0, 1, 2, 3, 4
VALIDATION_FILE = "validation.json"
CLASS_WINDOWS_FILE = "class_windows.json"

# Labels the pruning gives besides the junk classes: no junk class may take
# them, and the items of a pruned set that carry them are no junk examples
RESERVED_NAMES = (PARTICLE, EDGE_CLASS)


def prunedClasses(inputSet):
    """{predicted class: items} of a set whose items carry the pruning's
    predicted class (a discarded output, or a subset of it); None for any
    other set."""
    if inputSet.getSize() == 0 or not hasattr(inputSet.getFirstItem(), JUNK_CLASS_ATTR):
        return None
    return {row[JUNK_CLASS_ATTR]: row["COUNT"]
            for row in inputSet.aggregate(["COUNT"], JUNK_CLASS_ATTR, [JUNK_CLASS_ATTR])}


def idsByPredictedClass(inputSet):
    """{predicted class: ids of its items} of a pruned set, in one pass."""
    ids = collections.defaultdict(set)
    for item in inputSet.iterItems():
        ids[getattr(item, JUNK_CLASS_ATTR).get()].add(item.getObjId())
    return ids


def describeSet(pointer):
    """How the summary and the log name an input set: its label, else the
    output and the run that made it."""
    inputSet, source = pointer.get(), pointer.getObjValue()
    if inputSet.getObjLabel():
        return inputSet.getObjLabel()
    if pointer.hasExtended() and hasattr(source, "getRunName"):
        return "%s of '%s'" % (pointer.getExtended(), source.getRunName())
    return inputSet.getClassName()


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


def describeClassWindows(sources):
    """'45 windows: 20 from ice picks, 25 from outputCoordinates_discarded
    of 'pruning'' for the [[set, windows]] of one class."""
    return "%d windows: %s" % (sum(count for _, count in sources),
                               ", ".join("%d from %s" % (count, name)
                                         for name, count in sources))


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
    PickerOptimizer pruning protocol, whose discarded output brings its
    junk classes to a second round of this training."""
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
                      help="False picks, one set per junk class (e.g. coordinates "
                           "picked on ice, carbon, aggregates or empty areas); one set "
                           "for plain junk. The discarded output of an earlier pruning "
                           "(or a subset of it) gives one junk class per class it "
                           "predicted, named by it; its edge boxes and the items it "
                           "called particle are left out. Sets with the same name "
                           "make one class, e.g. ice picked by hand and the ice of a "
                           "discarded output. At least %d examples per class; a "
                           "hundred or more is better." % MIN_CLASS_EXAMPLES)
        form.addParam("junkNames", params.StringParam, default="",
                      label="Junk class names",
                      help="Comma-separated names of the junk classes, in the order "
                           "of the bad sets (e.g. 'ice,carbon'), one per set that is "
                           "not split by predicted class: a discarded output of a "
                           "pruning is named by the classes the pruning predicted "
                           "and takes no name here. A name given twice, or one of a "
                           "pruned set's classes, joins those examples into one "
                           "class. Empty (the start): "
                           "each set named after its label, else the output it is "
                           "(outputCoordinates_ice: ice), else the run that made it; "
                           "letters, digits and underscores, numbered when two are "
                           "the same.")
        form.addParam("splitPruned", params.BooleanParam, default=True,
                      expertLevel=params.LEVEL_ADVANCED,
                      label="Split pruned sets by predicted class",
                      help="Yes (the start): a bad set whose items carry the class a "
                           "pruning predicted (its discarded output, or a subset of "
                           "it) gives one junk class per predicted class, as above. "
                           "No: it is one junk class like any other set and takes a "
                           "name, e.g. particles of 2D classes judged junk that the "
                           "pruning had kept.")
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
                               "earlier pruner model", "automatic",
                               "base pruner (simulated windows)"],
                      label="Initial weights",
                      help="Automatic (the start): the backbone's ImageNet weights "
                           "when they are in the plugin's model folder, otherwise "
                           "from scratch, which on real beta-galactosidase windows "
                           "did as well as any other start without ImageNet "
                           "(BENCHMARKS.md, pretraining over seeds). "
                           "ImageNet: the backbone's weights in the model folder "
                           "(installed by `scipion3 installb cryoprune-models`). "
                           "Earlier pruner: continue from the output of a previous "
                           "training. Base pruner: a network pretrained on simulated "
                           "micrograph windows (particles, ice, carbon, aggregates, "
                           "empty background), made once by this protocol in the "
                           "model folder (about a minute on a CPU for ResNet-18) or "
                           "by `scipion3 installb cryoprune-models`; it scored below "
                           "from scratch on real windows. Nothing is downloaded.")
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
        form.addParam("inputSize", params.IntParam, allowsNull=True,
                      validators=[OptionalRange(32, 1024)], label="Network input (px)",
                      help="Windows are resized to this size for the network. Empty "
                           "(the start): %d px with ImageNet weights, as in the paper; "
                           "an earlier pruner's own size; %d px from scratch, where "
                           "larger inputs trained worse on real windows, most with few "
                           "examples: at 10 per class F1 0.84 at 64 px, 0.80 at 48, 0.61 "
                           "at 96 and 0.21 at 224 (BENCHMARKS.md, network input size)."
                           % (IMAGENET_INPUT_SIZE, SCRATCH_INPUT_SIZE))
        form.addParam("epochs", params.IntParam, default=TrainSettings.epochs,
                      validators=[params.Positive], label="Epochs",
                      help="Passes over all training windows; the epoch with the "
                           "best validation loss is kept. %d to start: on real windows "
                           "with 50 examples per class F1 0.913 against 0.899 with 8 "
                           "epochs and 0.915 with 40 (BENCHMARKS.md, training recipe); "
                           "fewer when starting from an earlier pruner."
                           % TrainSettings.epochs)
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
        for position in range(len(self._getInputPointers())):
            self._insertFunctionStep(self.windowsStep, position)
        self._insertFunctionStep(self.classesStep, needsGPU=False)
        if self.initialWeights == INIT_BASE:
            self._insertFunctionStep(self.basePrunerStep)
        self._insertFunctionStep(self.trainStep)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def windowsStep(self, position):
        """The windows of one input set (0: the good examples, then the bad
        sets) in a folder of its own; cut by a `cryoprune extract` job for
        coordinates. The edge boxes of a pruned set and the items it called
        particle are left out."""
        pointer = self._getInputPointers()[position]
        inputSet, windowsDir = pointer.get(), self._getSetWindowsDir(position)
        pwutils.cleanPath(windowsDir)
        items = [item.clone() for item in inputSet.iterItems(orderBy="id")]
        predicted = self._predictedClasses(pointer) if position else None
        if predicted:
            items = [item for item in items
                     if getattr(item, JUNK_CLASS_ATTR).get() not in RESERVED_NAMES]
            self.info("%s: %d %s boxes (crossing the micrograph edge, they cannot be "
                      "cut) and %d items called %s by the pruning left out"
                      % (describeSet(pointer), predicted.get(EDGE_CLASS, 0), EDGE_CLASS,
                         predicted.get(PARTICLE, 0), PARTICLE))
        ids = writeWindowInput(self, inputSet, items, windowsDir,
                               self._getExtraPath("input", "set%d" % position),
                               windowBox(inputSet, self.boxSize.get()))
        self.info("%s: %d windows of %d items (boxes crossing the micrograph edge left "
                  "out)" % (describeSet(pointer), len(ids), len(items)))

    def classesStep(self):
        """One folder per class, named after it, as train-pruner reads
        them: the windows of its sets, or of their items predicted as that
        class, linked, not copied. The windows each set gave go to the log
        and to the summary."""
        pointers = self._getInputPointers()
        classSources = self._getClassSources()
        split = {position for sources in classSources.values()
                 for position, label in sources if label is not None}
        idsByClass = {position: idsByPredictedClass(pointers[position].get())
                      for position in split}
        perClass = {}
        for name, sources in classSources.items():
            folders = [(self._getSetWindowsDir(position),
                        None if label is None else idsByClass[position][label])
                       for position, label in sources]
            windowsDir = self._getWindowsDir(name)
            pwutils.cleanPath(windowsDir)
            counts = mergeWindowFolders(folders, windowsDir)
            perClass[name] = [[describeSet(pointers[position]), count]
                              for (position, _), count in zip(sources, counts)]
            self.info("%s: %s" % (name, describeClassWindows(perClass[name])))
        with open(self._getExtraPath(CLASS_WINDOWS_FILE), "w") as f:
            json.dump(perClass, f, indent=1)

    def basePrunerStep(self):
        """Make the base pruner of the backbone unless made before."""
        weights = self._getInitialWeightsFile()
        if os.path.isfile(weights):
            self.info("Initial weights: %s" % weights)
            return
        self.info("No base pruner of %s in %s: making it first"
                  % (self._getBackbone(), Plugin.getModelsDir()))
        self.runCryoprune("base-pruner", "--out %s --backbone %s"
                          % (self._getBasePrunerDir(), self._getBackbone()))

    def trainStep(self):
        """Continue resumes the training that a failed or stopped run saved
        in the model folder."""
        args = ["--good %s" % self._getWindowsDir(PARTICLE)]
        args += ["--bad %s" % self._getWindowsDir(name) for name in self._getClassSources()
                 if name != PARTICLE]
        args += ["--downsample %s" % self.downFactor, "--out %s" % self._getModelDir(), "--resume", "--epochs %d" % self.epochs,
                 "--backbone %s" % self._getBackbone(),
                 "--few-shot %d" % self.fewShot, "--lr %s" % self.learningRate,
                 "--batch %d" % self.batchSize, "--val-fraction %s" % self.valFraction,
                 "--aux-weight %s" % self.auxWeight, "--seed %d" % self.seed]
        if self.inputSize.get() is not None:
            args.append("--input-size %d" % self.inputSize)
        weights = self._getInitialWeightsFile()
        if weights:
            args.append("--initial-weights %s" % os.path.abspath(weights))
        elif self.initialWeights == INIT_AUTOMATIC:
            self.info("No ImageNet weights of %s in %s: training from scratch"
                      % (self._getBackbone(), Plugin.getModelsDir()))
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
        pointers = self._getInputPointers()
        inputSets = [pointer.get() for pointer in pointers]
        if len(inputSets) < 2 or None in inputSets:
            return []  # pyworkflow reports the missing inputs
        errors = self._validateClasses()
        for pointer, inputSet in zip(pointers, inputSets):
            if inputSet.getSize() and not windowBox(inputSet, self.boxSize.get()):
                errors.append("%s: the coordinates have no box size; give one in the form"
                              % describeSet(pointer))
        sizes = {self._windowSize(s) for s in inputSets}
        if len(sizes) > 1:
            errors.append("The inputs give windows of different sizes %s px: use "
                          "particles of one box size, or coordinates with the box size "
                          "of the form" % sorted(sizes))
        if 0 < self.fewShot.get() < MIN_CLASS_EXAMPLES:
            errors.append("Examples per class (few-shot) is %d: use at least %d, or 0 "
                          "for all" % (self.fewShot.get(), MIN_CLASS_EXAMPLES))
        errors.extend(self._validateInitialWeights())
        return errors

    def _validateClasses(self):
        """The names the form gives and the examples of each class, the
        items of pruned sets counted by predicted class."""
        plain, names = self._getPlainPointers(), self._getPlainNames()
        if len(names) != len(plain):
            return ["%d junk class names (%s) for %d bad sets not split by predicted "
                    "class: give one name per such set, in the same order (a pruning's "
                    "discarded output is named by its classes)"
                    % (len(names), ",".join(names), len(plain))]
        errors = []
        bad = [n for n in self._getClassSources() if not NAME_PATTERN.match(n)]
        bad += [n for n in names if n in RESERVED_NAMES]
        if bad:
            errors.append("Invalid junk class names %s: use letters, digits and "
                          "underscores, starting with a letter, other than %s"
                          % (", ".join(bad), " and ".join(map(repr, RESERVED_NAMES))))
        pointers = self._getInputPointers()
        for pointer in pointers[1:]:
            predicted = self._predictedClasses(pointer)
            if predicted is not None and set(predicted) <= set(RESERVED_NAMES):
                errors.append("%s holds no junk examples: the pruning called its items "
                              "%s. To train them as one junk class, set 'Split pruned "
                              "sets by predicted class' to No"
                              % (describeSet(pointer), " or ".join(predicted)))
        for name, sources in self._getClassSources().items():
            label = "Good examples" if name == PARTICLE else name
            found = sum(self._countItems(pointers[position].get(), predicted)
                        for position, predicted in sources)
            if found < MIN_CLASS_EXAMPLES:
                errors.append("%s (%s) has %d examples: each class needs at least %d"
                              % (label, ", ".join(describeSet(pointers[position])
                                                  for position, _ in sources),
                                 found, MIN_CLASS_EXAMPLES))
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
        summary = ["Classes: %s" % ", ".join(metadata["classes"])]
        summary += ["%s: %s" % (name, describeClassWindows(sources))
                    for name, sources in self._readClassWindows().items()]
        summary += ["Training windows per class: %s, %d px, backbone %s, input %d px"
                    % (metadata["n_train"], metadata["box_size"], metadata["backbone"],
                       metadata["input_size"]),
                    "Initial weights: %s" % (metadata.get("initial_weights")
                                             or "none (trained from scratch)")]
        validation = metadata.get("validation")
        if validation:
            summary.append("Validation (%d windows, particle vs junk, %d test-time "
                           "copies): accuracy %.3f, precision %.3f, recall %.3f, F1 "
                           "%.3f, ROC AUC %.3f"
                           % (validation["n"], validation.get("test_time_copies", 1),
                              validation["accuracy"],
                              validation["precision"], validation["recall"],
                              validation["f1"], validation["roc_auc"]))
            summary.append("Confusion matrix (rows true, columns predicted %s): %s"
                           % (",".join(validation["classes"]), validation["confusion"]))
        return summary

    def _methods(self):
        if not self.hasAttribute(OUTPUT_MODEL):
            return []
        metadata = getattr(self, OUTPUT_MODEL).getMetadata()
        return ["A PickerOptimizer classifier %s (%s backbone with an auxiliary loss "
                "branch of weight %s, input %d px) was trained to separate particles of "
                "%s from the junk classes %s, for %d epochs."
                % (reference("Li2022PickerOptimizer"), self._getBackbone(), self.auxWeight,
                   metadata["input_size"], self.getObjectTag("inputGood"),
                   ", ".join(self._getJunkNames()),
                   self.epochs)]

    def _citations(self):
        return ["Li2022PickerOptimizer"]

    # --------------------------- UTILS functions -----------------------------
    def _getInputPointers(self):
        """The good set, then the bad sets: a set's position numbers its
        windows folder."""
        return [self.inputGood] + list(self.inputBad)

    def _getPlainPointers(self):
        """The bad sets named by the form or by themselves: those that are
        not outputs of a pruning."""
        return [pointer for pointer in self.inputBad
                if self._predictedClasses(pointer) is None]

    def _getPlainNames(self):
        names = [n.strip() for n in self.junkNames.get("").split(",") if n.strip()]
        return names or namesFromInputs(self._getPlainPointers(), "junk",
                                        reserved=RESERVED_NAMES)

    def _getClassSources(self):
        """{class: [(set position, predicted class)]}, the particles first,
        then the junk classes as they first appear in the bad sets: a plain
        set gives all its items to its name (predicted class None), a pruned
        set the items of each predicted class to a class of that name."""
        sources = {PARTICLE: [(0, None)]}
        names = iter(self._getPlainNames())
        for position, pointer in enumerate(self._getInputPointers()[1:], start=1):
            predicted = self._predictedClasses(pointer)
            if predicted is None:
                sources.setdefault(next(names), []).append((position, None))
                continue
            for name in sorted(set(predicted) - set(RESERVED_NAMES)):
                sources.setdefault(name, []).append((position, name))
        return sources

    def _getJunkNames(self):
        return list(self._getClassSources())[1:]

    def _predictedClasses(self, pointer):
        """`prunedClasses` of a bad set that is split by them."""
        return prunedClasses(pointer.get()) if self.splitPruned else None

    @staticmethod
    def _countItems(inputSet, predicted):
        """Items of a set, or those of one predicted class."""
        return inputSet.getSize() if predicted is None else prunedClasses(inputSet)[predicted]

    def _readClassWindows(self):
        """{class: [[set, windows]]} written by the classes step; empty before."""
        path = self._getExtraPath(CLASS_WINDOWS_FILE)
        if not os.path.isfile(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def _windowSize(self, inputSet):
        from ..engine.windows import downsampled_box
        return downsampled_box(windowBox(inputSet, self.boxSize.get()) or 2,
                               self.downFactor.get())

    def _getBackbone(self):
        if self.initialWeights == INIT_MODEL and self.inputModel.get() is not None:
            return self.inputModel.get().getMetadata()["backbone"]
        return self.getEnumText("backbone")

    def _getInitialWeightsFile(self):
        if self.initialWeights in (INIT_AUTOMATIC, INIT_IMAGENET):
            return backboneWeights(self._getBackbone())
        if self.initialWeights == INIT_BASE:
            return self._getBasePrunerDir(MODEL_WEIGHTS)
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

    def _getSetWindowsDir(self, position):
        return self._getExtraPath("sets", "set%d" % position)

    def _getModelDir(self, *paths):
        return self._getExtraPath("model", *paths)
