"""Particle extraction with `cryoprune extract`: SetOfCoordinates (and its
micrographs, or others of the same session) to SetOfParticles; follows
streamed input through pwem's extraction base class."""
import glob
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.objects import Coordinate, Particle
from pwem.protocols import ProtExtractParticles
from pwem.protocols.protocol_particles import SAME_AS_PICKING

from ..convert import (coordinatesPath, linkMicrographs, micrographStem,
                       readExtractedParticles, writeExtractionCoordinates,
                       writeMicrographCtfCsv)
from ..engine.windows import downsampled_box
from .base import CryoPruneProtocol

OUTPUT_PARTICLES = "outputParticles"


class CryoPruneProtExtractParticles(CryoPruneProtocol, ProtExtractParticles):
    """Extracts particles from micrographs around picked coordinates: each
    window is centred on its coordinate, optionally phase-flipped with the
    micrograph's CTF, downsampled by Fourier cropping, contrast-inverted and
    normalised to zero mean and unit deviation on a background ring outside
    75 % of the half box. Boxes that cross the micrograph edge are left out
    (the log counts them). Particles keep their coordinate, the CTF and the
    coordinates' extra attributes (score, view class). The work runs as a
    `cryoprune extract` job: on the GPU, or the queue, Scipion gives it."""
    _label = "extract particles"
    _devStatus = BETA

    # --------------------------- DEFINE param functions ----------------------
    def _definePreprocessParams(self, form):
        form.addParam("boxSize", params.IntParam, allowsNull=True,
                      label="Box size (px)",
                      help="Window side in pixels of the micrographs extracted from, "
                           "before downsampling; the window's centre pixel is box // 2. "
                           "Empty: the box size of the coordinates (scaled to these "
                           "micrographs).")
        form.addParam("downFactor", params.FloatParam, default=1.0,
                      validators=[params.GE(1.0)], label="Downsampling factor",
                      help="Windows are Fourier-cropped by this factor to an even size "
                           "(1: keep the pixel size).")
        form.addParam("doInvert", params.BooleanParam, default=False,
                      label="Invert contrast?",
                      help="Yes for micrographs with dark particles when the next "
                           "steps want white ones.")
        form.addParam("doFlip", params.BooleanParam, default=False,
                      label="Phase flip?",
                      help="Flip the phases of each window by its micrograph's CTF "
                           "(needs a CTF estimation).")
        # Extraction mostly reads micrographs: the CPU unless asked
        self._defineComputeParams(form, "extraction", threads=1, useGpu=False,
                                  severalGpus="the micrographs of a step split over them")
        self._defineStreamingParams(form)
        form.getParam("streamingBatchSize").setDefault(0)

    # --------------------------- STEPS functions -----------------------------
    def _extractMicrograph(self, mic, *args):
        self._extractMicrographList([mic], *args)

    def _extractMicrographList(self, micList, *args):
        """One `cryoprune extract` job for the micrographs of a step, into a
        folder of its own (named after its first micrograph)."""
        if not micList:
            return
        batch = self._getBatchDir(micList[0])
        coordsDir = os.path.join(batch, "coordinates")
        micFiles = linkMicrographs(micList, os.path.join(batch, "micrographs"))
        os.makedirs(coordsDir, exist_ok=True)
        scale = self._getCoordScale()
        for mic in micList:
            writeExtractionCoordinates(self.coordDict[mic.getObjId()], scale,
                                       coordinatesPath(coordsDir, mic.getObjId()))
        args = ["--micrographs %s" % " ".join(micFiles), "--coords %s" % coordsDir,
                "--box %d" % self._getBoxSize(), "--out %s" % batch,
                "--downsample %s" % self.downFactor,
                "--sampling-rate %s" % self._getMicSampling()]
        if self.doInvert:
            args.append("--invert")
        if self._doFlip():
            ctfFile = os.path.join(batch, "ctf.csv")
            writeMicrographCtfCsv(micList, ctfFile)
            acquisition = self.getInputMicrographs().getAcquisition()
            args += ["--ctf %s" % ctfFile, "--voltage %s" % acquisition.getVoltage(),
                     "--cs %s" % acquisition.getSphericalAberration(),
                     "--amplitude-contrast %s" % acquisition.getAmplitudeContrast()]
        self.runCryoprune("extract", " ".join(args))

    def readPartsFromMics(self, micDoneList, outputParts):
        """Append the particles of the micrographs done, each with its
        coordinate (and the coordinate's extra attributes) and CTF."""
        tables = {}
        for mic in micDoneList:
            stem = micrographStem(mic.getObjId())
            stacks = glob.glob(self._getExtraPath("batch_*", stem + ".mrcs"))
            if not stacks:  # every box crossed the edge, or no coordinates
                continue
            folder = os.path.dirname(stacks[0])
            if folder not in tables:
                tables[folder] = readExtractedParticles(folder)
            coords = {c.getObjId(): c for c in self.coordDict[mic.getObjId()]}
            for index, coordId in tables[folder][stem]:
                coord = coords[coordId]
                particle = Particle(location=(index + 1, stacks[0]))
                particle.setCoordinate(coord)
                particle.setMicId(mic.getObjId())
                particle.setAcquisition(mic.getAcquisition())
                if self._useCTF():
                    particle.setCTF(mic.getCTF())
                copyExtraAttributes(coord, particle)
                outputParts.append(particle)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        coords = self.getCoords()
        if coords is None or self.getInputMicrographs() is None:
            return []  # pyworkflow reports the missing inputs
        errors = []
        if self.doFlip and not self._useCTF():
            errors.append("Phase flip needs a CTF estimation: choose one, or set Phase "
                          "flip? to No")
        box = self._getBoxSize()
        width, height, _ = self.getInputMicrographs().getDim() or (0, 0, 0)
        if not box or box < 2:
            errors.append("No box size: give one of 2 px or more (the coordinates have "
                          "none)")
        elif width and box > min(width, height):
            errors.append("Box size %d px is larger than the micrographs (%d x %d px)"
                          % (box, width, height))
        return errors

    def _summary(self):
        particles = getattr(self, OUTPUT_PARTICLES, None)
        if particles is None:
            return ["Output particles not ready yet."]
        coords = self.getCoords()
        summary = ["%d particles of %d px (%.3g A/px) from %d coordinates; boxes "
                   "crossing the micrograph edge are left out (counted in the log)"
                   % (particles.getSize(), particles.getXDim() or 0,
                      particles.getSamplingRate(), coords.getSize() if coords else 0)]
        if self._doFlip():
            summary.append("Phase-flipped with the micrographs' CTF.")
        return summary

    def _methods(self):
        if getattr(self, OUTPUT_PARTICLES, None) is None:
            return []
        steps = ["Fourier-cropped by %s" % self.downFactor] if self.downFactor > 1 else []
        steps = (["phase-flipped"] if self._doFlip() else []) + steps
        steps += ["contrast-inverted"] if self.doInvert else []
        return ["Particles were extracted from %s at %s in boxes of %d px%s and "
                "normalised on the background outside 75%% of the half box."
                % (self.getObjectTag("inputCoordinates"),
                   self.getObjectTag(getattr(self, OUTPUT_PARTICLES)), self._getBoxSize(),
                   ", " + ", ".join(steps) if steps else "")]

    # --------------------------- UTILS functions -----------------------------
    def getCoords(self):
        return self.inputCoordinates.get()

    def getInputMicrographs(self):
        if self._micsOther():
            return self.inputMicrographs.get()
        coords = self.getCoords()
        return coords.getMicrographs() if coords is not None else None

    def _micsOther(self):
        return self.downsampleType != SAME_AS_PICKING

    def _useCTF(self):
        return self.ctfRelations.hasValue()

    def _doFlip(self):
        return bool(self.doFlip) and self._useCTF()

    def _getMicSampling(self):
        return self.getInputMicrographs().getSamplingRate()

    def _getCoordScale(self):
        """Coordinates are in pixels of the micrographs they were picked on."""
        return self.getCoords().getMicrographs().getSamplingRate() / self._getMicSampling()

    def _getBoxSize(self):
        return self.boxSize.get() or int(round(self.getCoords().getBoxSize()
                                               * self._getCoordScale()))

    def _getNewSampling(self):
        box = self._getBoxSize()
        size = box if self.downFactor.get() == 1 else downsampled_box(box, self.downFactor.get())
        return self._getMicSampling() * box / size

    def _getBatchDir(self, mic):
        return self._getExtraPath("batch_%06d" % mic.getObjId())


def copyExtraAttributes(coord, particle):
    """The attributes a coordinate carries beyond a plain Coordinate's
    (score, view class of the picker), copied onto its particle."""
    plain = Coordinate()
    for name, value in coord.getAttributes():
        if not hasattr(plain, name):
            setattr(particle, name, value.clone())
