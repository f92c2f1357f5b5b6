"""Headless tests of the viewers: each renders a PNG from the outputs of a
picking, a pruning and a 2D classification run, built here directly from
simulated data (no training), and what it shows is counted."""
import os

import numpy as np
import pyworkflow.object as pwobj
from pyworkflow.protocol import STATUS_FINISHED
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER
from pwem import Domain
from pwem.protocols import ProtImportMicrographs, ProtImportParticles
from pwem.viewers import ClassesView, DataViewer

from cryoprune_scipion.constants import (CLASS_ATTR, MODEL_METADATA, MODEL_WEIGHTS,
                                         PARTICLE_SCORE_ATTR, SCORE_ATTR, SCORES)
from cryoprune_scipion.cli.demo import save_picks_picture
from cryoprune_scipion.convert import setPruningAttributes
from cryoprune_scipion.engine.io import write_json, write_micrograph, write_stack
from cryoprune_scipion.engine.metrics import PickingScore, score_picks
from cryoprune_scipion.engine.ranking import ClassScore, write_scores
from cryoprune_scipion.engine.simulate import simulate_micrograph
from cryoprune_scipion.objects import CryoPrunePrunerModel
from cryoprune_scipion.protocols import (CryoPruneProtContrastive2D,
                                         CryoPruneProtPickerOptimizer,
                                         CryoPruneProtPickerOptimizerTraining,
                                         CryoPruneProtScoreSubset, CryoPruneProtYoloPicking,
                                         CryoPruneProtYoloTraining)
from cryoprune_scipion.viewers import (CryoPruneClassGalleryViewer, CryoPrunePicksViewer,
                                       CryoPrunePrunerTrainingViewer)
from cryoprune_scipion.viewers.viewer_picks import readPicks, scoredSets
from cryoprune_scipion.wizards import (CryoPruneBoxSizeWizard, CryoPruneThresholdWizard,
                                       boxFromDiameter)
from coordinate_import import import_coordinates, new_coordinates

SHAPE = (256, 320)        # rows, columns
PIXEL_SIZE = 4.0
BOX_SIZE = 40
FALSE_PICKS = 6           # per micrograph, off the particles
JUNK_CLASSES = ["particle", "ice", "carbon"]
CLASS_SIZES = [12, 7, 3, 2]
PARTICLE_BOX = 32
# A pruner's validation windows: particle probability and true class (0: particle).
# At 0.5, 3 of 4 particles and 1 of 3 junk windows stay: precision and recall 0.75;
# at 0.7, 2 particles and no junk: precision 1, recall 0.5.
VALIDATION_WINDOWS = {"particle_probability": [0.9, 0.8, 0.6, 0.3, 0.2, 0.55, 0.1],
                      "class_index": [0, 0, 0, 0, 1, 1, 2]}


class TestViewers(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.rng = np.random.default_rng(8)
        cls.particles = cls._simulate(cls.getOutputPath("simulated"))
        prot = cls.newProtocol(ProtImportMicrographs, filesPath=cls.getOutputPath("simulated"),
                               filesPattern="sim_*.mrc", samplingRate=PIXEL_SIZE,
                               voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1)
        cls.mics = cls.launchProtocol(prot).outputMicrographs
        cls.micsPointer = pwobj.Pointer(prot, extended="outputMicrographs")
        cls.reference = import_coordinates(
            cls, cls.mics, lambda mic: [(p["x"], p["y"]) for p in cls._truth(mic)],
            BOX_SIZE, "reference").outputCoordinates
        cls.picking = cls._picking()
        cls.pruning = cls._pruning(cls.picking, "outputCoordinates")
        cls.particlesImport = cls._importParticles()
        cls.prunerTraining = cls._prunerTraining()

    @classmethod
    def _simulate(cls, folder):
        os.makedirs(folder)
        particles = {}
        for i in range(2):
            simulated = simulate_micrograph(SHAPE, n_particles=10, pixel_size=PIXEL_SIZE,
                                            snr=3.0, seed=800 + i)
            write_micrograph(os.path.join(folder, "sim_%d.mrc" % i), simulated.image,
                             PIXEL_SIZE)
            particles["sim_%d.mrc" % i] = simulated.particles
        return particles

    @classmethod
    def _truth(cls, mic):
        return cls.particles[mic.getMicName()]

    @classmethod
    def _saved(cls, prot, outputs):
        """`prot` saved in the project with `outputs` as if it had run."""
        cls.proj.saveProtocol(prot)
        os.makedirs(prot._getExtraPath(), exist_ok=True)
        outputs(prot)
        prot.setStatus(STATUS_FINISHED)
        cls.proj._storeProtocol(prot)
        return prot

    @classmethod
    def _picking(cls):
        """A picking run's outputCoordinates: the true particles with high
        confidence and their view, and false picks with low confidence."""
        def outputs(prot):
            coords = prot._createSetOfCoordinates(cls.micsPointer)
            coords.setBoxSize(BOX_SIZE)
            for mic in cls.mics.iterItems():
                truth = cls._truth(mic)
                false = cls.rng.uniform(BOX_SIZE, SHAPE[1] - BOX_SIZE, (FALSE_PICKS, 2))
                centres = [(p["x"], p["y"]) for p in truth] + false.tolist()
                views = [p["view"] for p in truth] + ["top"] * FALSE_PICKS
                scores = np.concatenate([cls.rng.uniform(0.4, 1.0, len(truth)),
                                         cls.rng.uniform(0.0, 0.5, FALSE_PICKS)])
                for coord, view, score in zip(new_coordinates(mic, centres), views, scores):
                    setattr(coord, SCORE_ATTR, pwobj.Float(score))
                    setattr(coord, CLASS_ATTR, pwobj.String(view))
                    coords.append(coord)
            coords.write()
            prot._defineOutputs(outputCoordinates=coords)
        return cls._saved(cls.newProtocol(CryoPruneProtYoloPicking, threshold=0.25,
                                          inputMicrographs=cls.micsPointer),
                          outputs)

    @classmethod
    def _pruning(cls, inputProt, inputName):
        """A pruning run of coordinates or particles: random probabilities
        and junk classes, kept at its threshold, the rest discarded."""
        def outputs(prot):
            items = getattr(inputProt, inputName)
            kept, discarded = prot._getOutputSets(items)
            for item in items.iterItems():
                score = cls.rng.uniform()
                setPruningAttributes(item, score, cls.rng.choice(JUNK_CLASSES))
                (kept if score >= prot.threshold.get() else discarded).append(item.clone())
            kept.write()
            discarded.write()
        prot = cls.newProtocol(CryoPruneProtPickerOptimizer)
        prot.inputSet.set(inputProt)
        prot.inputSet.setExtended(inputName)
        return cls._saved(prot, outputs)

    @classmethod
    def _prunerTraining(cls):
        """A pruner training run's model: three epochs, the second kept, and
        the validation windows above."""
        def outputs(prot):
            folder = prot._getExtraPath("model")
            os.makedirs(folder)
            history = [{"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                        "val_accuracy": 0.5 + 0.1 * epoch} for epoch in (1, 2, 3)]
            write_json(os.path.join(folder, MODEL_METADATA),
                       {"kind": "pruner", "classes": JUNK_CLASSES, "history": history,
                        "best_epoch": 2, "validation_windows": VALIDATION_WINDOWS})
            prot._defineOutputs(outputModel=CryoPrunePrunerModel(
                filename=os.path.join(folder, MODEL_WEIGHTS)))
        return cls._saved(cls.newProtocol(CryoPruneProtPickerOptimizerTraining), outputs)

    @classmethod
    def _importParticles(cls):
        """Particles of noise, as many as the classes below hold, without
        coordinates."""
        folder = cls.getOutputPath("particles")
        os.makedirs(folder)
        write_stack(os.path.join(folder, "particles.mrcs"),
                    cls.rng.normal(size=(sum(CLASS_SIZES), PARTICLE_BOX, PARTICLE_BOX))
                    .astype(np.float32), PIXEL_SIZE)
        return cls.launchProtocol(cls.newProtocol(
            ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_FILES,
            filesPath=folder, filesPattern="particles.mrcs", samplingRate=PIXEL_SIZE,
            voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1))

    def _viewer(self, viewerClass, prot, **values):
        viewer = viewerClass(project=self.proj)
        viewer.setProtocol(prot)
        for name, value in values.items():
            getattr(viewer, name).set(value)
        return viewer

    def _png(self, plotter, name):
        path = self.getOutputPath(name)
        plotter.savefig(path)
        plotter.close()
        self.assertGreater(os.path.getsize(path), 0)

    # ------------------------------------------------------------ picks
    def test_viewers_found_for_each_protocol(self):
        for prot in (self.picking, self.pruning):
            self.assertIn(CryoPrunePicksViewer, Domain.findViewers(prot, DESKTOP_TKINTER))

    def test_picks_on_micrograph(self):
        threshold = 0.45
        viewer = self._viewer(CryoPrunePicksViewer, self.picking, threshold=threshold,
                              micrograph=2)
        [plotter] = viewer._showPicks()
        ax = plotter.getFigure().axes[0]
        mic = list(self.mics.iterItems(orderBy="id"))[1]
        scores = [c.getAttributeValue(SCORE_ATTR) for c in
                  self.picking.outputCoordinates.iterItems(where="_micId=%d" % mic.getObjId())]
        drawn = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
        below = [n for label, n in drawn.items() if label.startswith("below")]
        self.assertEqual(below, [sum(s < threshold for s in scores)])
        self.assertEqual(sum(drawn.values()) - below[0], sum(s >= threshold for s in scores))
        self.assertIn("%d of %d picks" % (sum(s >= threshold for s in scores), len(scores)),
                      ax.get_title())
        self.assertEqual(len(ax.get_legend().get_texts()), len(drawn))
        plotter.slider.set_val(0.0)  # moving the slider redraws every pick in colour
        [below] = [c for c in ax.collections if c.get_label().startswith("below")]
        self.assertEqual(len(below.get_offsets()), 0)
        self.assertIn("%d of %d picks" % (len(scores), len(scores)), ax.get_title())
        self._png(plotter, "picks.png")

    def test_score_histograms(self):
        for prot, step, classes in ((self.picking, "picker", {"top", "side"}),
                                    (self.pruning, "pruner", set(JUNK_CLASSES))):
            viewer = self._viewer(CryoPrunePicksViewer, prot)
            [plotter] = viewer._showHistogram()
            ax = plotter.getFigure().axes[0]
            self.assertEqual(sum(bar.get_height() for bar in ax.patches),
                             self.picking.outputCoordinates.getSize())
            texts = [t.get_text() for t in ax.get_legend().get_texts()]
            [threshold] = [text for text in texts if text.startswith("threshold")]
            self.assertEqual({text.split(" (")[0] for text in texts if text != threshold},
                             classes)
            scoreAttr, _ = SCORES[step]
            scores = [c.getAttributeValue(scoreAttr) for s in scoredSets(prot)
                      for c in s.iterItems()]
            self.assertIn("%d of %d" % (sum(s >= prot.getThreshold() for s in scores),
                                        len(scores)), threshold)
            self.assertEqual(ax.lines[0].get_xdata()[0], prot.getThreshold())
            self._png(plotter, "histogram_%s.png" % prot.getObjId())

    def test_histogram_of_pruned_particles(self):
        pruning = self._pruning(self.particlesImport, "outputParticles")
        [plotter] = self._viewer(CryoPrunePicksViewer, pruning)._showHistogram()
        ax = plotter.getFigure().axes[0]
        self.assertEqual(sum(bar.get_height() for bar in ax.patches), sum(CLASS_SIZES))
        [message] = self._viewer(CryoPrunePicksViewer, pruning)._showPicks()
        self.assertIn("coordinate outputs only", message.getMessage())
        plotter.close()

    def test_precision_recall(self):
        viewer = self._viewer(CryoPrunePicksViewer, self.picking, threshold=0.0)
        viewer.referenceCoordinates.set(self.reference)
        [plotter] = viewer._showPrecisionRecall()
        ax = plotter.getFigure().axes[0]
        picks, reference = readPicks([self.picking.outputCoordinates]), readPicks([self.reference])
        expected = sum((score_picks(np.column_stack([picks.on(name).x, picks.on(name).y]),
                                    np.column_stack([reference.on(name).x,
                                                     reference.on(name).y]),
                                    BOX_SIZE / 2, picks.on(name).score)
                        for name in self.particles), PickingScore(0, 0, 0))
        curve, point = ax.lines
        self.assertEqual(len(curve.get_xdata()), len(picks))
        self.assertAlmostEqual(point.get_xdata()[0], expected.recall)
        self.assertAlmostEqual(point.get_ydata()[0], expected.precision)
        self._png(plotter, "precision_recall.png")

    def test_subset_by_score(self):
        threshold = 0.7
        prot = self.newProtocol(CryoPruneProtScoreSubset, threshold=threshold,
                                scoreStep=list(SCORES).index("pruner"))
        prot.inputSet.set(self.pruning)
        prot.inputSet.setExtended("outputCoordinates")
        self.launchProtocol(prot)
        kept = self.pruning.outputCoordinates
        expected = sum(c.getAttributeValue(PARTICLE_SCORE_ATTR) >= threshold
                       for c in kept.iterItems())
        self.assertEqual(prot.outputCoordinates.getSize(), expected)
        self.assertEqual(prot.outputCoordinates.getBoxSize(), BOX_SIZE)
        self.assertTrue(all(c.getAttributeValue(PARTICLE_SCORE_ATTR) >= threshold
                            for c in prot.outputCoordinates.iterItems()))

    def test_threshold_wizard(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        prot = self.newProtocol(CryoPruneProtScoreSubset, threshold=0.5,
                                scoreStep=list(SCORES).index("picker"))
        prot.inputSet.set(self.picking)
        prot.inputSet.setExtended("outputCoordinates")
        self.assertIs(Domain.findWizards(prot, DESKTOP_TKINTER)["threshold"],
                      CryoPruneThresholdWizard)
        figure = Figure()
        FigureCanvasAgg(figure)
        chosen = []
        slider, _ = CryoPruneThresholdWizard.drawHistogram(figure, prot, chosen.append)
        scores = [c.getAttributeValue(SCORE_ATTR)
                  for c in self.picking.outputCoordinates.iterItems()]
        ax = figure.axes[0]
        self.assertEqual(sum(bar.get_height() for bar in ax.patches), len(scores))
        slider.set_val(0.8)
        self.assertEqual(chosen, [0.8])  # what the wizard puts in the form
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        self.assertIn("threshold 0.80: %d of %d" % (sum(s >= 0.8 for s in scores), len(scores)),
                      texts)
        figure.savefig(self.getOutputPath("threshold_wizard.png"))

    def test_pruner_training_curves_and_validation_windows(self):
        self.assertIn(CryoPrunePrunerTrainingViewer,
                      Domain.findViewers(self.prunerTraining, DESKTOP_TKINTER))
        viewer = CryoPrunePrunerTrainingViewer(project=self.proj)
        curves, validation = viewer._visualize(self.prunerTraining)
        loss, accuracy = curves.getFigure().axes
        self.assertEqual([len(line.get_xdata()) for line in loss.lines], [3, 3, 2])
        self.assertEqual(loss.lines[-1].get_xdata()[0], 2)  # the epoch kept
        np.testing.assert_allclose(accuracy.lines[0].get_ydata(), [0.6, 0.7, 0.8])
        [ax] = validation.getFigure().axes
        self.assertEqual(sum(bar.get_height() for bar in ax.patches), 7)
        self.assertIn("at 0.50 precision 0.750, recall 0.750", ax.get_title())
        self._png(curves, "pruner_curves.png")
        self._png(validation, "pruner_validation.png")

    def test_pruning_threshold_wizard_moves_over_the_validation_windows(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        prune = self.newProtocol(CryoPruneProtPickerOptimizer)
        self.assertIs(Domain.findWizards(prune, DESKTOP_TKINTER)["threshold"],
                      CryoPruneThresholdWizard)
        _, missing = CryoPruneThresholdWizard.drawHistogram(Figure(), prune)
        self.assertEqual(missing, "Choose the pruner model first.")
        prune.inputModel.set(self.prunerTraining)
        prune.inputModel.setExtended("outputModel")
        figure = Figure()
        FigureCanvasAgg(figure)
        chosen = []
        slider, _ = CryoPruneThresholdWizard.drawHistogram(figure, prune, chosen.append)
        slider.set_val(0.7)
        self.assertEqual(chosen, [0.7])
        self.assertIn("at 0.70 precision 1.000, recall 0.500", figure.axes[0].get_title())

    def test_box_size_from_the_particle_diameter(self):
        self.assertEqual(boxFromDiameter(190, 1.77), 162)  # beta-galactosidase, 1.5 x 107 px
        self.assertEqual(boxFromDiameter(100, PIXEL_SIZE), 38)
        training = self.newProtocol(CryoPruneProtYoloTraining)
        self.assertIsNone(CryoPruneBoxSizeWizard.getSamplingRate(training))
        training.inputMicrographs.set(self.micsPointer.getObjValue())
        training.inputMicrographs.setExtended("outputMicrographs")
        self.assertEqual(CryoPruneBoxSizeWizard.getSamplingRate(training), PIXEL_SIZE)

    def test_subset_from_viewer(self):
        viewer = self._viewer(CryoPrunePicksViewer, self.pruning, threshold=0.3)
        [refusal] = viewer._createSubset()
        self.assertIn("outputCoordinates_discarded", refusal.getMessage())
        viewer.threshold.set(0.8)
        viewer._createSubset()
        [subset] = [p for p in self.proj.getRuns(refresh=True)
                    if isinstance(p, CryoPruneProtScoreSubset) and p.threshold.get() == 0.8]
        self._waitOutput(subset, "outputCoordinates", sleepTime=0.5, timeOut=60)
        kept = self.pruning.outputCoordinates
        self.assertEqual(subset.outputCoordinates.getSize(),
                         sum(c.getAttributeValue(PARTICLE_SCORE_ATTR) >= 0.8
                             for c in kept.iterItems()))

    # ------------------------------------------------------------ classes
    def test_class_gallery(self):
        prot = self._classification()
        classes = prot.outputClasses
        self.assertIn(CryoPruneClassGalleryViewer, Domain.findViewers(prot, DESKTOP_TKINTER))
        for order in (0, 1):
            viewer = self._viewer(CryoPruneClassGalleryViewer, prot, classOrder=order)
            [plotter] = viewer._showGallery()
            axes = [ax for ax in plotter.getFigure().axes if ax.images]
            self.assertEqual(len(axes), classes.getSize())
            sizes = [int(ax.get_title().split(": ")[1].split()[0]) for ax in axes]
            if order == 0:
                self.assertEqual(sizes, sorted(CLASS_SIZES, reverse=True))
            self._png(plotter, "gallery_%d.png" % order)
        [view] = self._viewer(CryoPruneClassGalleryViewer, prot)._showClasses()
        self.assertIn("_cryopruneResolution", view.getShowJParams())
        self.assertIn(DataViewer, Domain.findViewers(classes, DESKTOP_TKINTER))
        self.assertIsInstance(DataViewer(project=self.proj)._visualize(classes)[0],
                              ClassesView)

    def _classification(self):
        """A 2D classification run's outputs made by its own output step from
        the files its job writes."""
        box = PARTICLE_BOX
        labels = np.repeat(np.arange(1, len(CLASS_SIZES) + 1), CLASS_SIZES)

        def outputs(prot):
            extra = prot._getExtraPath()
            write_stack(os.path.join(extra, "averages.mrcs"),
                        self.rng.normal(size=(len(CLASS_SIZES), box, box)).astype(np.float32))
            with open(os.path.join(extra, "alignment.csv"), "w") as f:
                f.write("index,class,angle,shift_x,shift_y,weight\n")
                f.writelines("%d,%d,0,0,0,1\n" % (i, k) for i, k in enumerate(labels))
            write_scores([ClassScore(n, 8.0 - k, 6.0, 0.1 * k, None)
                          for k, n in enumerate(CLASS_SIZES)], extra)
            open(os.path.join(extra, "encoder.pt"), "w").close()
            with open(os.path.join(extra, "model.json"), "w") as f:
                f.write('{"kind": "encoder", "working_size": %d}' % box)
            prot.createOutputStep()
        prot = self.newProtocol(CryoPruneProtContrastive2D,
                                numberOfClasses=len(CLASS_SIZES))
        prot.inputParticles.set(self.particlesImport)
        prot.inputParticles.setExtended("outputParticles")
        return self._saved(prot, outputs)


def test_demo_picture(tmp_path):
    """The demo's picture: every pick drawn, a legend of the view classes and
    the precision in the title."""
    simulated = simulate_micrograph(SHAPE, n_particles=8, pixel_size=PIXEL_SIZE, seed=1)
    picks = [{"x": p["x"], "y": p["y"], "score": 0.9, "class": p["view"]}
             for p in simulated.particles]
    path = str(tmp_path / "picks.png")
    [ax] = save_picks_picture(simulated.image, picks, path, "sim: precision 1.00").axes
    assert os.path.getsize(path) > 0
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(picks)
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()][:2] \
        == sorted({p["class"] for p in picks})
    assert ax.get_title().startswith("sim: precision 1.00")
