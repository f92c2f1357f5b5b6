"""Contrastive 2D classification: SetOfParticles to SetOfClasses2D."""
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.protocols import ProtClassify2D

from ..constants import CORRELATION_ATTR, MODEL_METADATA, RESOLUTION_ATTR
from ..convert import (MRC_STACK_SUFFIXES, alignmentToTransform, readAlignmentCsv,
                       writeParticleCtfCsv, writeParticleStack)
from ..engine.classify2d import ClassificationSettings
from ..engine.contrastive import Augmentations, TrainingSettings
from ..engine.ranking import ORDERS
from ..engine.refine import MODES, RefinementSettings
from ..objects import CryoPruneEncoderModel
from .base import CryoPruneProtocol, reference

OUTPUT_CLASSES = "outputClasses"
OUTPUT_ENCODER = "outputEncoder"
OUTPUT_SUBSET = "outputParticles"  # particles of the classes above the score threshold
REFINE_MODES, CLASS_ORDERS = list(MODES), list(ORDERS)


class CryoPruneProtContrastive2D(CryoPruneProtocol, ProtClassify2D):
    """Sorts particles into 2D classes without alignment during clustering:
    a CNN encoder learns features of the particles themselves by contrastive
    (SimCLR) training with cryo-EM augmentations, k-means++ clusters the
    features, and each class is then aligned in Fourier space and averaged
    with weights from the alignment correlation. Particles carry their class
    and 2D alignment; the trained encoder is an output too."""
    _label = "contrastive 2D classification"
    _devStatus = BETA
    _possibleOutputs = {OUTPUT_CLASSES: "SetOfClasses2D",
                        OUTPUT_ENCODER: CryoPruneEncoderModel,
                        OUTPUT_SUBSET: "SetOfParticles"}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      important=True, label="Input particles",
                      help="Particles in MRC stacks, all of one box size, e.g. the "
                           "kept particles after pruning, extracted.")
        form.addParam("numberOfClasses", params.IntParam, default=10,
                      validators=[params.Positive], label="Number of classes",
                      help="2D classes to make; 10 to start, about one per 200-500 "
                           "particles for a first look at the views.")
        form.addParam("phaseFlip", params.BooleanParam, default=True,
                      label="Phase-flip with the CTF?",
                      help="Flip the phases of each particle by its CTF before "
                           "training and averaging; Yes to start. Done only when the "
                           "particles carry CTF values; particles without CTF are "
                           "used as they are (the summary says which).")
        form.addParam("initialEncoder", params.PointerParam,
                      pointerClass="CryoPruneEncoderModel", allowsNull=True,
                      label="Initial encoder",
                      help="Start from the encoder of an earlier run (its working size "
                           "and feature size are kept). Empty (the start): train from "
                           "scratch.")

        form.addSection(label="Training")
        form.addParam("epochs", params.IntParam, default=TrainingSettings.epochs,
                      validators=[params.GE(0)], label="Epochs",
                      help="Passes over all particles; %d to start. 0 with an initial "
                           "encoder uses that encoder unchanged." % TrainingSettings.epochs)
        form.addParam("batchSize", params.IntParam, default=TrainingSettings.batch,
                      validators=[params.GE(2)], label="Batch size",
                      help="Particles per step; each is contrasted with the others "
                           "of its batch. %d to start; lower it when the GPU runs "
                           "out of memory." % TrainingSettings.batch)
        form.addParam("workingSize", params.IntParam,
                      default=ClassificationSettings.working_size,
                      validators=[params.Range(16, 512)], label="Working size (px)",
                      help="Particles are Fourier-cropped to this size; %d to start, "
                           "up to 128 px for fine detail (slower)."
                           % ClassificationSettings.working_size)
        form.addParam("temperature", params.FloatParam, default=TrainingSettings.temperature,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Temperature",
                      help="Temperature of the NT-Xent loss; %s to start. Lower "
                           "values weigh the hardest negatives more."
                           % TrainingSettings.temperature)
        form.addParam("featureSize", params.IntParam, default=TrainingSettings.feature_size,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Feature size",
                      help="Length of the feature vector the encoder gives each "
                           "particle, which k-means clusters; %d to start."
                           % TrainingSettings.feature_size)
        form.addParam("augRotation", params.BooleanParam, default=Augmentations.rotation,
                      expertLevel=params.LEVEL_ADVANCED, label="Augment: in-plane rotation",
                      help="Rotated copies count as the same particle, so classes "
                           "gather views, not orientations; Yes to start.")
        form.addParam("augFlip", params.BooleanParam, default=Augmentations.flip,
                      expertLevel=params.LEVEL_ADVANCED, label="Augment: mirror",
                      help="Mirror views then fall into one class; the alignment does "
                           "not mirror, so their average is blurred. No to start.")
        form.addParam("augNoise", params.FloatParam, default=Augmentations.noise,
                      validators=[params.GE(0)], expertLevel=params.LEVEL_ADVANCED,
                      label="Augment: added noise",
                      help="Largest added noise, in units of the particle's standard "
                           "deviation; %s to start, 0 for none." % Augmentations.noise)
        form.addParam("augLowpass", params.BooleanParam, default=Augmentations.lowpass,
                      expertLevel=params.LEVEL_ADVANCED, label="Augment: random low-pass",
                      help="Random low-pass filters, so classes do not follow the "
                           "defocus; Yes to start.")
        form.addParam("augJitter", params.BooleanParam, default=Augmentations.jitter,
                      expertLevel=params.LEVEL_ADVANCED,
                      label="Augment: contrast and brightness",
                      help="Random contrast and brightness, so classes do not follow "
                           "the ice thickness; Yes to start.")
        form.addParam("augMask", params.BooleanParam, default=Augmentations.mask,
                      expertLevel=params.LEVEL_ADVANCED, label="Circular mask",
                      help="Mask the particles with a soft circle, so neighbours in "
                           "the box do not decide the class; Yes to start.")

        form.addSection(label="Averages")
        form.addParam("alignIterations", params.IntParam,
                      default=ClassificationSettings.align_iterations,
                      validators=[params.Positive], expertLevel=params.LEVEL_ADVANCED,
                      label="Alignment iterations",
                      help="Rounds of aligning the class members to the class "
                           "average and averaging them again; %d to start."
                           % ClassificationSettings.align_iterations)
        form.addParam("seed", params.IntParam, default=TrainingSettings.seed,
                      expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seeds the training, the augmentation and k-means: the "
                           "same seed repeats a run.")
        self._defineRefinementParams(form)
        self._defineComputeParams(form, "classification", threads=2)

    def _defineRefinementParams(self, form):
        """Refinement by multi-reference alignment and ranked classes (issue 11)."""
        form.addSection(label="Refinement")
        form.addParam("refinePasses", params.IntParam, default=RefinementSettings.passes,
                      validators=[params.GE(0)], label="Refinement passes",
                      help="Passes that align every particle to every class average "
                           "(rotation and shift, in Fourier space), move it to the best "
                           "class and average again; empty or tiny classes are reseeded "
                           "by splitting the largest, and two classes whose averages "
                           "match after alignment are merged and the largest class split "
                           "in two. Stops earlier when the classes settle; when the last "
                           "pass still merges or reseeds, up to %d clean-up passes follow. "
                           "%d to start; 0: keep the clustering's classes."
                           % (RefinementSettings.cleanup_passes, RefinementSettings.passes))
        form.addParam("refineMode", params.EnumParam, choices=REFINE_MODES,
                      default=REFINE_MODES.index(RefinementSettings.mode),
                      expertLevel=params.LEVEL_ADVANCED, label="Assignment",
                      help="hard (the start): each particle to its best class; soft: "
                           "weighted over the classes by maximum-likelihood "
                           "posteriors.")
        form.addParam("refineAngleStep", params.FloatParam,
                      default=RefinementSettings.angle_step,
                      validators=[params.Range(1, 90)], label="Angular step (deg)",
                      expertLevel=params.LEVEL_ADVANCED,
                      help="Step of the in-plane rotation search; %s to start, "
                           "smaller for large particles (slower)."
                           % RefinementSettings.angle_step)
        form.addParam("classOrder", params.EnumParam, choices=CLASS_ORDERS,
                      default=CLASS_ORDERS.index(ClassificationSettings.class_order),
                      label="Order classes by",
                      help="size (the start): class 1 the largest; resolution: class 1 "
                           "the one whose two half-set averages agree to the finest "
                           "detail (FRC 0.5).")
        form.addParam("subsetResolution", params.FloatParam, default=0.0,
                      validators=[params.GE(0)], label="Keep classes better than (A)",
                      help="Also output the particles of the classes whose half-set FRC "
                           "resolution is this or better (a smaller number). 0 (the "
                           "start): no subset.")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.classifyStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        particles = self.inputParticles.get()
        writeParticleStack(particles, self._getParticleStack())
        if self._usesCtf():
            writeParticleCtfCsv(particles, self._getTmpPath("ctf.csv"))

    def classifyStep(self):
        """Continue resumes the training that a failed or stopped run saved
        in the extra folder."""
        particles = self.inputParticles.get()
        args = ["--particles %s" % self._getParticleStack(),
                "--classes %d" % self.numberOfClasses,
                "--out %s" % self._getExtraPath(), "--resume",
                "--epochs %d" % self.epochs, "--batch %d" % self.batchSize,
                "--temperature %s" % self.temperature,
                "--feature-size %d" % self.featureSize,
                "--working-size %d" % self.workingSize,
                "--align-iterations %d" % self.alignIterations,
                "--noise %s" % self.augNoise, "--seed %d" % self.seed,
                "--sampling-rate %s" % particles.getSamplingRate()]
        args += [flag for flag, on in [("--no-rotation", not self.augRotation),
                                       ("--flip", self.augFlip),
                                       ("--no-lowpass", not self.augLowpass),
                                       ("--no-jitter", not self.augJitter),
                                       ("--no-mask", not self.augMask)] if on]
        if self._usesCtf():
            acquisition = particles.getAcquisition()
            args += ["--ctf %s" % self._getTmpPath("ctf.csv"),
                     "--voltage %s" % acquisition.getVoltage(),
                     "--cs %s" % acquisition.getSphericalAberration(),
                     "--amplitude-contrast %s" % acquisition.getAmplitudeContrast()]
        if self.initialEncoder.get() is not None:
            args.append("--initial-encoder %s"
                        % os.path.abspath(self.initialEncoder.get().getFileName()))
        args += self._refinementArgs()
        self.runCryoprune("classify2d", " ".join(args))

    def createOutputStep(self):
        particles = self.inputParticles  # the pointer, as SetOfClasses wants it
        averages = self._getExtraPath("averages.mrcs")
        rows = readAlignmentCsv(self._getExtraPath("alignment.csv"))

        def updateParticle(particle, row):
            particle.setClassId(row["class"])
            particle.setTransform(alignmentToTransform(row["angle"], row["shift_x"],
                                                       row["shift_y"]))

        scores = self._readClassScores()

        def updateClass(classItem):
            classItem.setAlignment2D()
            classItem.getRepresentative().setLocation(classItem.getObjId(), averages)
            self._setClassScores(classItem, scores)

        classes = self._createSetOfClasses2D(particles)
        classes.classifyItems(updateItemCallback=updateParticle,
                              updateClassCallback=updateClass,
                              itemDataIterator=rows, iterParams={"orderBy": "id"},
                              classifyDisabled=True)
        encoder = CryoPruneEncoderModel(filename=self._getExtraPath("encoder.pt"))
        encoder.setWorkingSize(encoder.getMetadata()["working_size"])
        self._defineOutputs(**{OUTPUT_CLASSES: classes, OUTPUT_ENCODER: encoder})
        self._defineSourceRelation(particles, classes)
        self._defineSourceRelation(particles, encoder)
        self._createSubsetOutput(classes)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        particles = self.inputParticles.get()
        if particles is None:
            return []
        errors = []
        if self.numberOfClasses > particles.getSize():
            errors.append("%d classes asked for but there are only %d particles"
                          % (self.numberOfClasses, particles.getSize()))
        fileName = particles.getFirstItem().getFileName()
        if os.path.splitext(fileName)[1].lower() not in MRC_STACK_SUFFIXES:
            errors.append("Particles must be in MRC stacks (%s is not); convert them "
                          "first" % fileName)
        encoder = self.initialEncoder.get()
        if encoder is None and self.epochs.get() == 0:
            errors.append("Epochs 0 uses an initial encoder as it is: choose an initial "
                          "encoder, or train for 1 epoch or more")
        if encoder is not None:
            metadata = os.path.join(os.path.dirname(encoder.getFileName()), MODEL_METADATA)
            if not os.path.isfile(encoder.getFileName()) or not os.path.isfile(metadata):
                errors.append("Initial encoder %s or its %s is missing: the run that "
                              "trained it was deleted or moved"
                              % (encoder.getFileName(), MODEL_METADATA))
        return errors

    def _summary(self):
        classes = getattr(self, OUTPUT_CLASSES, None)
        if classes is None:
            return ["Output classes not ready yet."]
        sizes = sorted((c.getSize() for c in classes.iterItems()), reverse=True)
        summary = ["%d particles in %d classes (sizes %s)"
                   % (sum(sizes), len(sizes), ", ".join(map(str, sizes))),
                   self._describeRefinement()]
        summary += self._describeScores()
        return summary + [self._describePhaseFlip()]

    def _methods(self):
        if not self.hasAttribute(OUTPUT_CLASSES):
            return []
        flipped = " were phase-flipped with their CTF and" if self._usesCtf() else ""
        return ["%s particles%s were classified into %d 2D classes by contrastive "
                "learning of an encoder (%d epochs, batch %d, temperature %s, working "
                "size %d px) and k-means++ on its features %s; class averages were made "
                "by Fourier-space alignment and correlation-weighted averaging %s."
                % (self.getObjectTag("inputParticles"), flipped,
                   self.numberOfClasses.get(), self.epochs.get(), self.batchSize.get(),
                   self.temperature.get(), self.workingSize.get(),
                   reference("Yan2022CLClustering"), reference("Tang2024SimcryoCluster"))]

    def _citations(self):
        return ["Yan2022CLClustering", "Tang2024SimcryoCluster"]

    # --------------------------- UTILS functions -----------------------------
    def _refinementArgs(self):
        return ["--refine-passes %d" % self.refinePasses,
                "--refine-mode %s" % REFINE_MODES[self.refineMode.get()],
                "--refine-angle-step %s" % self.refineAngleStep,
                "--class-order %s" % CLASS_ORDERS[self.classOrder.get()]]

    def _readClassScores(self):
        from ..engine.ranking import SCORES_FILE, read_scores
        path = self._getExtraPath(SCORES_FILE)
        return read_scores(path) if os.path.isfile(path) else {}

    @staticmethod
    def _setClassScores(classItem, scores):
        from pyworkflow.object import Float
        row = scores.get(classItem.getObjId())
        if row is not None:
            setattr(classItem, RESOLUTION_ATTR, Float(row["resolution"]))
            setattr(classItem, CORRELATION_ATTR, Float(row["mean_correlation"]))

    def _createSubsetOutput(self, classes):
        """The particles of the classes at or better than subsetResolution."""
        threshold = self.subsetResolution.get()
        if not threshold:
            return
        scores = self._readClassScores()
        good = {k for k, row in scores.items() if row["resolution"] <= threshold}
        subset = self._createSetOfParticles()
        subset.copyInfo(self.inputParticles.get())
        for classItem in classes.iterItems():
            if classItem.getObjId() in good:
                for particle in classItem.iterItems():
                    subset.append(particle.clone())
        self._defineOutputs(**{OUTPUT_SUBSET: subset})
        self._defineSourceRelation(self.inputParticles, subset)
    def _getParticleStack(self):
        return self._getTmpPath("particles.mrcs")

    def _describeRefinement(self):
        passes = getattr(self, OUTPUT_ENCODER).getMetadata().get("refinement_passes", 0)
        if not passes:
            return "Classes of the contrastive clustering, not refined."
        cleanup = max(0, passes - self.refinePasses.get())
        return ("Refined by %d passes of multi-reference alignment (%s assignment; at most "
                "%d asked%s)." % (passes, REFINE_MODES[self.refineMode.get()],
                                  self.refinePasses.get(),
                                  ", %d more to clean up after a merge or reseed in the last"
                                  % cleanup if cleanup else ""))

    def _describeScores(self):
        """Best and worst class resolution, and the subset of good particles."""
        scores = self._readClassScores()
        if not scores:
            return []
        best = min(scores, key=lambda k: scores[k]["resolution"])
        worst = max(scores, key=lambda k: scores[k]["resolution"])
        lines = ["Class resolution (half-set FRC 0.5): best %.1f A (class %d), worst %.1f A "
                 "(class %d)." % (scores[best]["resolution"], best, scores[worst]["resolution"],
                                  worst)]
        subset = getattr(self, OUTPUT_SUBSET, None)
        if subset is not None:
            lines.append("%d particles in the classes at or better than %.1f A (%s)."
                         % (subset.getSize(), self.subsetResolution.get(), OUTPUT_SUBSET))
        return lines

    def _describePhaseFlip(self):
        if self._usesCtf():
            return "Particles phase-flipped with their CTF."
        if self.phaseFlip:
            return "Particles not phase-flipped: they have no CTF."
        return "Particles not phase-flipped (Phase-flip with the CTF? is No)."

    def _usesCtf(self):
        particles = self.inputParticles.get()
        return bool(self.phaseFlip) and particles is not None and particles.hasCTF()
