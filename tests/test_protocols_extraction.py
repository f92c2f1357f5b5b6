"""Headless Scipion test of the extraction protocol between picking and 2D
classification: simulated micrographs and coordinates (some near the edge,
each with a score) are imported, extracted to particles that keep their
coordinate and score, and the particles are classified."""
import os

import numpy as np
import pyworkflow.object as pwobj
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.objects import SetOfCoordinates
from pwem.protocols import ProtImportCoordinates, ProtImportMicrographs

from cryoprune_scipion.constants import SCORE_ATTR
from cryoprune_scipion.engine.extraction import ExtractionSettings, extract_micrograph
from cryoprune_scipion.engine.io import read_stack, write_micrograph
from cryoprune_scipion.engine.simulate import simulate_micrograph
from cryoprune_scipion.protocols import (CryoPruneProtContrastive2D,
                                         CryoPruneProtExtractParticles)
from coordinate_import import new_coordinates

SHAPE = (320, 384)
PIXEL_SIZE = 4.0
BOX = 48
DOWNSAMPLE = 1.5    # 48 px windows to 32 px
N_MICROGRAPHS = 2
EDGE_CENTRES = [(10, 100), (200, SHAPE[0] - 5)]  # boxes crossing the edge


class TestExtraction(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("simulated")
        os.makedirs(folder, exist_ok=True)
        cls.centres = {}
        for i in range(N_MICROGRAPHS):
            simulated = simulate_micrograph(SHAPE, n_particles=8, pixel_size=PIXEL_SIZE,
                                            snr=3.0, seed=40 + i)
            write_micrograph(os.path.join(folder, "sim_%d.mrc" % i), simulated.image,
                             PIXEL_SIZE)
            cls.centres["sim_%d" % i] = [(round(p["x"]), round(p["y"]))
                                         for p in simulated.particles]
        importMics = cls.newProtocol(ProtImportMicrographs, filesPath=folder,
                                     filesPattern="sim_*.mrc", samplingRate=PIXEL_SIZE,
                                     voltage=300, sphericalAberration=2.7,
                                     amplitudeContrast=0.1)
        cls.launchProtocol(importMics)
        cls.mics = importMics.outputMicrographs
        cls.coordImport = cls._importScoredCoordinates()

    @classmethod
    def _importScoredCoordinates(cls):
        """Each micrograph's true centres and two edge ones, each coordinate
        with a score (as the picking protocol gives them)."""
        path = cls.getOutputPath("coordinates.sqlite")
        coordSet = SetOfCoordinates(filename=path)
        coordSet.setBoxSize(BOX)
        for mic in cls.mics:
            stem = os.path.splitext(mic.getMicName())[0]
            for k, coord in enumerate(new_coordinates(mic, cls.centres[stem] + EDGE_CENTRES)):
                setattr(coord, SCORE_ATTR, pwobj.Float(0.5 + 0.01 * k))
                coordSet.append(coord)
        coordSet.write()
        coordSet.close()
        prot = cls.newProtocol(ProtImportCoordinates,
                               importFrom=ProtImportCoordinates.IMPORT_FROM_SCIPION,
                               filesPath=path, inputMicrographs=cls.mics, boxSize=BOX)
        return cls.launchProtocol(prot)

    def test_extract_then_classify(self):
        extraction = self.newProtocol(CryoPruneProtExtractParticles, boxSize=BOX,
                                      downFactor=DOWNSAMPLE, doInvert=True, useGpu=False)
        extraction.inputCoordinates.set(self.coordImport)
        extraction.inputCoordinates.setExtended("outputCoordinates")
        self.launchProtocol(extraction)

        particles = extraction.outputParticles
        inside = sum(len(c) for c in self.centres.values())
        self.assertEqual(particles.getSize(), inside)  # the edge boxes are left out
        self.assertEqual(particles.getXDim(), 32)
        self.assertAlmostEqual(particles.getSamplingRate(), PIXEL_SIZE * BOX / 32)
        self.assertTrue(particles.hasCoordinates())
        mics = {mic.getObjId(): mic.clone() for mic in self.mics}
        settings = ExtractionSettings(BOX, DOWNSAMPLE, invert=True)
        for particle in particles.iterItems(orderBy="id"):
            coord = particle.getCoordinate()
            mic = mics[particle.getMicId()]
            stem = os.path.splitext(mic.getMicName())[0]
            self.assertIn((coord.getX(), coord.getY()), self.centres[stem])
            self.assertGreaterEqual(getattr(particle, SCORE_ATTR).get(), 0.5)
            # the image is the window of its own coordinate
            expected, _, _ = extract_micrograph(mic.getFileName(), [
                {"x": coord.getX(), "y": coord.getY()}], settings)
            index, stack = particle.getLocation()
            np.testing.assert_allclose(read_stack(stack)[index - 1], expected[0], atol=1e-4)
        self.assertIn("%d particles of 32 px" % inside, extraction.summary()[0])

        classify = self.newProtocol(CryoPruneProtContrastive2D, numberOfClasses=2, epochs=1,
                                    batchSize=8, workingSize=32, alignIterations=1,
                                    refinePasses=1, phaseFlip=False, useGpu=False)
        classify.inputParticles.set(extraction)
        classify.inputParticles.setExtended("outputParticles")
        self.launchProtocol(classify)
        classes = classify.outputClasses
        self.assertEqual(classes.getSize(), 2)
        self.assertEqual(sum(c.getSize() for c in classes), inside)
