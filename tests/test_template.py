"""The workflow templates load into a Scipion project as connected chains."""
from pyworkflow.tests import BaseTest, setupTestProject

import pwem


class TestPickingTemplate(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_template_loads_as_a_connected_picking_workflow(self):
        plugin = pwem.Domain.getPlugin("cryoprune_scipion")
        templates = {t.name: t for t in plugin.Plugin().getTemplates()}
        template = templates["cryoprune_picking"]
        template.replaceEnvVariables()
        template.parseContent()
        aliases = {p.getAlias() for p in template.getParams().values()}
        self.assertTrue({"micspath", "toppath", "sidepath", "topbox", "epochs"} <= aliases)
        template.setParamValue("epochs", "40")
        template.setParamValue("pickgpus", "1")

        protocols = self.proj.loadProtocols(template.createTemplateFile())
        byId = {int(key): protocol for key, protocol in protocols.items()}
        self.assertEqual([p.getClassName() for _, p in sorted(byId.items())],
                         ["ProtImportMicrographs", "ProtImportCoordinates",
                          "ProtImportCoordinates", "CryoPruneProtYoloTraining",
                          "CryoPruneProtYoloPicking"])
        training, picking = byId[5], byId[6]
        self.assertEqual(training.epochs.get(), 40)
        self.assertEqual(training.classNames.get(), "top,side")
        self.assertEqual([p.getObjValue() for p in training.inputCoordinates],
                         [byId[3], byId[4]])
        self.assertIs(training.inputMicrographs.getObjValue(), byId[2])
        self.assertIs(picking.inputModel.getObjValue(), training)
        self.assertEqual(picking.gpuList.get(), "1")


class TestChainTemplate(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_chain_template_loads_from_import_to_2d_classes(self):
        plugin = pwem.Domain.getPlugin("cryoprune_scipion")
        template = {t.name: t for t in plugin.Plugin().getTemplates()}["cryoprune_chain"]
        template.replaceEnvVariables()
        template.parseContent()
        aliases = {p.getAlias() for p in template.getParams().values()}
        self.assertTrue({"micspath", "toppath", "sidepath", "junkpath", "epochs",
                         "prunethreshold", "classes"} <= aliases)
        template.setParamValue("classes", "6")
        template.setParamValue("prunegpus", "1")

        protocols = self.proj.loadProtocols(template.createTemplateFile())
        byId = {int(key): protocol for key, protocol in protocols.items()}
        self.assertEqual([p.getClassName() for _, p in sorted(byId.items())],
                         ["ProtImportMicrographs", "ProtImportCoordinates",
                          "ProtImportCoordinates", "ProtImportCoordinates",
                          "CryoPruneProtYoloTraining", "CryoPruneProtYoloPicking",
                          "ProtUnionSet", "CryoPruneProtPickerOptimizerTraining",
                          "CryoPruneProtPickerOptimizer", "CryoPruneProtExtractParticles",
                          "CryoPruneProtContrastive2D"])
        (mics, top, side, junk, training, picking, union, prunerTraining, pruning,
         extraction, classes) = [byId[i] for i in range(2, 13)]
        self.assertIs(picking.inputModel.getObjValue(), training)
        self.assertEqual([p.getObjValue() for p in union.inputSets], [top, side])
        self.assertIs(prunerTraining.inputGood.getObjValue(), union)
        self.assertEqual([p.getObjValue() for p in prunerTraining.inputBad], [junk])
        self.assertIs(pruning.inputSet.getObjValue(), picking)
        self.assertIs(pruning.inputModel.getObjValue(), prunerTraining)
        # Box size and downsampling left to the pruner model.
        self.assertIsNone(pruning.boxSize.get())
        self.assertIsNone(pruning.downFactor.get())
        self.assertEqual(pruning.gpuList.get(), "1")
        # The kept coordinates extracted at their box size, then classified.
        self.assertIs(extraction.inputCoordinates.getObjValue(), pruning)
        self.assertEqual(extraction.inputCoordinates.getExtended(), "outputCoordinates")
        self.assertIsNone(extraction.boxSize.get())
        self.assertIs(classes.inputParticles.getObjValue(), extraction)
        self.assertEqual(classes.inputParticles.getExtended(), "outputParticles")
        self.assertEqual(classes.numberOfClasses.get(), 6)
