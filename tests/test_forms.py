"""The five forms as a facility user reads them: help on every parameter,
method knobs at the Advanced level in every form, defaults that are the
engine's, and the job command they make."""
import unittest
from unittest import mock

import pyworkflow.protocol.params as params

from cryoprune_scipion import Plugin
from cryoprune_scipion.engine.classify2d import ClassificationSettings
from cryoprune_scipion.engine.contrastive import Augmentations, TrainingSettings
from cryoprune_scipion.engine.picking import Detection, PickerTraining
from cryoprune_scipion.engine.preprocess import PreprocessSettings
from cryoprune_scipion.engine import pruning
from cryoprune_scipion.engine.pruning import TrainSettings
from cryoprune_scipion.protocols.base import reference
from cryoprune_scipion.protocols.protocol_yolo_training import (
    describePreprocessingChoice, describeSplit, describeThreshold)
from cryoprune_scipion.protocols import (CryoPruneProtContrastive2D,
                                         CryoPruneProtPickerOptimizer,
                                         CryoPruneProtPickerOptimizerTraining,
                                         CryoPruneProtYoloPicking, CryoPruneProtYoloTraining)

PROTOCOLS = [CryoPruneProtYoloTraining, CryoPruneProtYoloPicking,
             CryoPruneProtPickerOptimizerTraining, CryoPruneProtPickerOptimizer,
             CryoPruneProtContrastive2D]
# Method knobs: Advanced wherever a form has them
ADVANCED = {"learningRate", "seed", "patience", "tileSize", "augment", "doWavelet",
            "wavelet", "waveletLevels", "waveletMode", "doWiener", "wienerSize", "doClahe",
            "claheTiles", "claheClip", "doNormalize", "iou", "maxDetections", "fewShot",
            "auxWeight", "temperature", "featureSize", "augRotation", "augFlip",
            "augNoise", "augLowpass", "augJitter", "augMask", "alignIterations",
            "refineMode", "refineAngleStep", "chunkSize", "streamingSleep", "workingBox"}
# What a user chooses: Normal wherever a form has them
NORMAL = {"epochs", "batchSize", "numberOfClasses", "threshold", "boxSize", "downFactor",
          "workingSize", "valFraction", "initialWeights"}


def ownParams(protocol):
    """(name, param) of the plugin's own parameters (not pwem's streaming
    and parallel ones)."""
    form = protocol().getDefinition()
    for section in form.iterSections():
        if section.getLabel() == "Parallelization":
            continue
        for name, param in section.iterParams():
            if not isinstance(param, (params.Group, params.Line)) and name != "streamingWarning":
                yield name, param


class TestForms(unittest.TestCase):
    def test_every_parameter_has_help(self):
        for protocol in PROTOCOLS:
            for name, param in ownParams(protocol):
                self.assertTrue(param.getHelp(), "%s.%s" % (protocol.__name__, name))

    def test_expert_levels_agree_across_forms(self):
        for protocol in PROTOCOLS:
            for name, param in ownParams(protocol):
                where = "%s.%s" % (protocol.__name__, name)
                if name in ADVANCED:
                    self.assertEqual(param.expertLevel.get(), params.LEVEL_ADVANCED, where)
                elif name in NORMAL:
                    self.assertEqual(param.expertLevel.get(), params.LEVEL_NORMAL, where)

    def test_thread_help_says_how_gpus_and_threads_combine(self):
        for protocol in PROTOCOLS:
            prot = protocol()
            threads = prot.getDefinition().getParam("numberOfThreads")
            self.assertIn("GPUs and threads add up", threads.getHelp(), protocol.__name__)

    def test_form_defaults_are_the_engines(self):
        yolo = CryoPruneProtYoloTraining()
        self.assertEqual((yolo.epochs.get(), yolo.batchSize.get(), yolo.learningRate.get(),
                          yolo.workingSize.get(), yolo.workingBox.get(), yolo.wavelet.get(),
                          yolo.wienerSize.get()),
                         (PickerTraining.epochs, PickerTraining.batch,
                          PickerTraining.learning_rate, PreprocessSettings.working_size,
                          PreprocessSettings.working_box, PreprocessSettings.wavelet,
                          PreprocessSettings.wiener_size))
        self.assertEqual(yolo.getEnumText("modelFamily") + yolo.getEnumText("modelSize"),
                         PickerTraining.model)
        picking = CryoPruneProtYoloPicking()
        self.assertEqual((picking.threshold.get(), picking.iou.get(),
                          picking.maxDetections.get(), picking.getTtaCopies()),
                         (None, Detection.iou, Detection.max_det,  # None: the model's
                          Detection.tta))
        self.assertEqual(CryoPruneProtPickerOptimizer().getTtaCopies(), pruning.TTA)
        pruner = CryoPruneProtPickerOptimizerTraining()
        self.assertEqual((pruner.epochs.get(), pruner.inputSize.get(),
                          pruner.learningRate.get(), pruner.getEnumText("backbone")),
                         (TrainSettings.epochs, None,  # None: automatic
                          TrainSettings.learning_rate, TrainSettings.backbone))
        classes = CryoPruneProtContrastive2D()
        self.assertEqual((classes.epochs.get(), classes.temperature.get(),
                          classes.workingSize.get(), classes.augFlip.get()),
                         (TrainingSettings.epochs, TrainingSettings.temperature,
                          ClassificationSettings.working_size, Augmentations.flip))

    def test_jobs_get_the_thread_count(self):
        prot = CryoPruneProtPickerOptimizer()
        prot.numberOfThreads.set(3)
        with mock.patch.object(Plugin, "runCryoprune") as run:
            prot.runCryoprune("prune", "--particles p.mrcs")
        run.assert_called_once_with(prot, "prune", "--particles p.mrcs --threads 3")

    def test_pruner_training_passes_the_input_size_only_when_given(self):
        prot = CryoPruneProtPickerOptimizerTraining()
        with mock.patch.object(prot, "_getClassSources", return_value=["particle", "ice"]), \
                mock.patch.object(prot, "_getInitialWeightsFile", return_value=None), \
                mock.patch.object(prot, "info"), \
                mock.patch.object(Plugin, "getModelsDir", return_value="models"), \
                mock.patch.object(Plugin, "runCryoprune") as run:
            prot.trainStep()
            prot.inputSize.set(48)
            prot.trainStep()
        automatic, given = (call.args[2] for call in run.call_args_list)
        self.assertNotIn("--input-size", automatic)  # the engine's automatic size
        self.assertIn("--input-size 48", given)


class TestSummaries(unittest.TestCase):
    def test_training_summary_says_how_the_micrographs_were_used(self):
        self.assertEqual(describeSplit({"micrographs_trained": 3, "validation_fraction": 0.2,
                                        "micrographs_skipped": 2}),
                         "3 annotated micrographs, a strip of 20 % of each held out for "
                         "validation; 2 without coordinates skipped")
        self.assertIn("1 annotated micrographs, validated on the training tiles",
                      describeSplit({"micrographs_trained": 1, "validation_fraction": 0,
                                     "micrographs_skipped": 0}))
        self.assertIn("2 micrographs trained, 1 held out for validation",  # 0.1 models
                      describeSplit({"micrographs_trained": 3, "micrographs_held_out": 1,
                                     "micrographs_skipped": 0}))

    def test_training_summary_gives_the_stored_threshold_or_why_there_is_none(self):
        figures = {"precision": 0.9, "recall": 0.8, "f1": 0.847, "particles": 120}
        metadata = {"thresholds": {"1": 0.3, "2": 0.3, "4": 0.25, "8": 0.2},
                    "threshold_validation": {c: figures for c in ("1", "2", "4", "8")}}
        self.assertEqual(describeThreshold(metadata),
                         "Picking threshold chosen on the validation strips: 0.25 with 4 "
                         "test-time copies (precision 0.900, recall 0.800, F1 0.847 on 120 "
                         "particles); 0.3 with 1, 0.3 with 2, 0.25 with 4, 0.2 with 8")
        self.assertIn("none chosen (no validation strips", describeThreshold({}))

    def test_training_summary_gives_the_preprocessing_chosen_by_validation(self):
        choice = {"chosen": "flattening",
                  "trials": {"filters": {"f1": 0.83, "view_f1": 0.83, "threshold": 0.3},
                             "flattening": {"f1": 0.86, "view_f1": 0.86, "threshold": 0.25}}}
        self.assertEqual(describePreprocessingChoice({"preprocessing_choice": choice}),
                         "Preprocessing chosen by validation: background flattening only "
                         "(view F1 0.830 with restored contrast, 0.860 with background "
                         "flattening only)")
        self.assertIsNone(describePreprocessingChoice({}))
        choice.update(chosen="filters", trials={})
        self.assertIn("not chosen by validation (no validation strips)",
                      describePreprocessingChoice({"preprocessing_choice": choice}))

    def test_choose_by_validation_passes_its_flag_with_restored_contrast_only(self):
        prot = CryoPruneProtYoloTraining()
        self.assertIn("--choose-preprocessing", prot._getPreprocessArgs())  # the start
        self.assertIn("--working-box %d" % PreprocessSettings.working_box,
                      prot._getPreprocessArgs())
        prot.choosePreprocessing.set(False)
        self.assertNotIn("--choose-preprocessing", prot._getPreprocessArgs())
        prot.choosePreprocessing.set(True)
        prot.doPreprocess.set(False)  # nothing to choose between
        self.assertEqual(prot._getPreprocessArgs()[-1], "--no-preprocess")

    def test_methods_name_references_not_keys(self):
        self.assertEqual(reference("Li2022PickerOptimizer"),
                         "(Li et al., Journal of Computational Biology 29, 2022)")
        self.assertIn("github.com/ultralytics", reference("Jocher2023Ultralytics"))

    def test_no_methods_before_a_run(self):
        for protocol in PROTOCOLS[2:]:
            self.assertEqual(protocol()._methods(), [], protocol.__name__)


if __name__ == "__main__":
    unittest.main()
