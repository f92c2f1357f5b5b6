"""The workflow template loads into a Scipion project as a connected chain."""
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
