"""Headless Scipion test of the contrastive 2D classification protocol:
simulated particles of two known views are imported, classified into a
SetOfClasses2D, and the classes feed pwem's class-subset protocol."""
import os

import mrcfile
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.protocols import ProtClassesSelector, ProtImportParticles

from cryoprune_scipion.convert import alignmentToTransform, transformToAlignment
from cryoprune_scipion.engine.io import write_stack
from cryoprune_scipion.engine.metrics import clustering_accuracy
from cryoprune_scipion.engine.refine import RefinementSettings
from cryoprune_scipion.engine.simulate import barrel, simulate_particle_stack
from cryoprune_scipion.objects import CryoPruneEncoderModel
from cryoprune_scipion.protocols import CryoPruneProtContrastive2D

N_PARTICLES = 80
BOX = 48
PIXEL_SIZE = 3.0


class TestContrastive2D(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("simulated")
        os.makedirs(folder, exist_ok=True)
        images, cls.views, cls.angles, _, _ = simulate_particle_stack(
            barrel(radius=40.0, height=60.0, symmetry=5), [(0.0, 0.0), (0.0, 90.0)],
            N_PARTICLES, box=BOX, pixel_size=PIXEL_SIZE, snr=2.0, max_shift=2.0, seed=11)
        write_stack(os.path.join(folder, "particles.mrcs"), images, PIXEL_SIZE)
        cls.importProt = cls.newProtocol(
            ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_FILES,
            filesPath=folder, filesPattern="particles.mrcs", samplingRate=PIXEL_SIZE,
            voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1)
        cls.launchProtocol(cls.importProt)

    def test_classes_alignment_and_subset(self):
        particles = self.importProt.outputParticles
        self.assertEqual(particles.getSize(), N_PARTICLES)
        prot = self.newProtocol(CryoPruneProtContrastive2D, numberOfClasses=2, epochs=3,
                                batchSize=32, workingSize=48, phaseFlip=False,
                                useGpu=False, numberOfThreads=1)
        prot.inputParticles.set(self.importProt)
        prot.inputParticles.setExtended("outputParticles")
        self.launchProtocol(prot)

        classes = prot.outputClasses
        self.assertEqual(classes.getSize(), 2)
        self.assertTrue(classes.hasRepresentatives())
        averages = prot._getExtraPath("averages.mrcs")
        with mrcfile.open(averages) as mrc:
            self.assertEqual(mrc.data.shape, (2, BOX, BOX))
        seen = {}
        sizes = []
        for classItem in classes.iterItems(orderBy="id"):
            representative = classItem.getRepresentative()
            self.assertEqual(representative.getLocation(), (classItem.getObjId(), averages))
            self.assertAlmostEqual(classItem.getSamplingRate(), PIXEL_SIZE)
            self.assertTrue(classItem.hasAlignment2D())
            sizes.append(classItem.getSize())
            for particle in classItem:
                self.assertNotIn(particle.getObjId(), seen)  # one class per particle
                seen[particle.getObjId()] = classItem.getObjId()
                self.assertEqual(particle.getClassId(), classItem.getObjId())
                angle, shiftX, shiftY = transformToAlignment(particle.getTransform())
                self.assertTrue(0 <= angle < 360 and abs(shiftX) < BOX and abs(shiftY) < BOX)
        self.assertEqual(sorted(seen), [p.getObjId() for p in particles.iterItems(orderBy="id")])
        self.assertGreaterEqual(sizes[0], sizes[1])  # class 1 is the largest
        predicted = [seen[i] for i in sorted(seen)]
        self.assertGreaterEqual(clustering_accuracy(self.views, predicted), 0.9)

        encoder = prot.outputEncoder
        self.assertIsInstance(encoder, CryoPruneEncoderModel)
        self.assertTrue(os.path.isfile(encoder.getFileName()))
        self.assertEqual(encoder.getWorkingSize(), 48)

        subset = self.newProtocol(ProtClassesSelector, firstNElements=1)
        subset.inputClasses.set(prot)
        subset.inputClasses.setExtended("outputClasses")
        self.launchProtocol(subset)
        self.assertEqual(subset.output.getSize(), max(sizes))
        summary = "\n".join(prot.summary())
        self.assertIn("%d particles in 2 classes" % N_PARTICLES, summary)
        self.assertIn("Refined by", summary)  # the default passes
        self.assertNotIn("particles in the classes at or better", summary)  # no subset asked

    def test_ranked_classes_and_good_subset(self):
        """Refined classes ordered by resolution, scores on the classes, and
        the particles of the classes under the resolution threshold."""
        from cryoprune_scipion.constants import CORRELATION_ATTR, RESOLUTION_ATTR
        prot = self.newProtocol(CryoPruneProtContrastive2D, numberOfClasses=2, epochs=2,
                                batchSize=32, workingSize=48, phaseFlip=False,
                                refinePasses=2, classOrder=1, subsetResolution=1000.0,
                                useGpu=False, numberOfThreads=1)
        prot.inputParticles.set(self.importProt)
        prot.inputParticles.setExtended("outputParticles")
        self.launchProtocol(prot)
        resolutions = []
        for classItem in prot.outputClasses.iterItems(orderBy="id"):
            resolutions.append(getattr(classItem, RESOLUTION_ATTR).get())
            self.assertGreater(getattr(classItem, CORRELATION_ATTR).get(), 0)
        self.assertEqual(resolutions, sorted(resolutions))  # class 1 the best
        self.assertTrue(os.path.isfile(prot._getExtraPath("class_scores.csv")))
        self.assertEqual(prot.outputParticles.getSize(), N_PARTICLES)  # every class kept
        summary = "\n".join(prot.summary())
        passes = prot.outputEncoder.getMetadata()["refinement_passes"]
        self.assertTrue(1 <= passes <= 2 + RefinementSettings.cleanup_passes)
        self.assertIn("Refined by %d passes" % passes, summary)
        self.assertIn("at most 2 asked", summary)
        self.assertIn("best %.1f A (class 1), worst %.1f A (class 2)" % tuple(resolutions),
                      summary)
        self.assertIn("%d particles in the classes at or better than 1000.0 A" % N_PARTICLES,
                      summary)

    def test_transform_round_trip(self):
        angle, shiftX, shiftY = transformToAlignment(alignmentToTransform(250.5, 1.25, -3.0))
        self.assertAlmostEqual(angle, 250.5, places=5)
        self.assertAlmostEqual(shiftX, 1.25)
        self.assertAlmostEqual(shiftY, -3.0)
