"""Training curves and validation windows of the picker optimizer training."""
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..engine.plots import draw_training_history, draw_validation_histogram, validation_picks
from ..protocols.protocol_pruner_training import (OUTPUT_MODEL,
                                                  CryoPruneProtPickerOptimizerTraining)
from ..protocols.protocol_pruning import PARTICLE_THRESHOLD


class CryoPrunePrunerTrainingViewer(Viewer):
    """Loss and validation accuracy per epoch, with the epoch kept, and the
    validation windows' particle probabilities by true class at the pruning
    form's starting threshold."""
    _label = "training curves and validation"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoPruneProtPickerOptimizerTraining]

    def _visualize(self, obj, **kwargs):
        if not obj.hasAttribute(OUTPUT_MODEL):
            return [self.infoMessage("No model yet: the training has not finished.",
                                     title="Picker optimizer training")]
        metadata = getattr(obj, OUTPUT_MODEL).getMetadata()
        plots = [self._curves(metadata)]
        if metadata.get("validation_windows"):
            plots.append(self._validation(metadata))
        return plots

    @staticmethod
    def _curves(metadata):
        from pwem.viewers import EmPlotter
        plotter = EmPlotter(x=2, y=1, windowTitle="Picker optimizer training")
        draw_training_history(plotter.createSubPlot("Losses", "epoch", "loss"),
                              plotter.createSubPlot("Validation", "epoch", "accuracy"),
                              metadata["history"], metadata["best_epoch"])
        return plotter

    @staticmethod
    def _validation(metadata):
        from pwem.viewers import EmPlotter
        plotter = EmPlotter(figsize=(7, 4.5), windowTitle="Validation windows")
        picks = validation_picks(metadata["validation_windows"], metadata["classes"])
        draw_validation_histogram(plotter.getFigure().add_subplot(), picks,
                                  metadata["classes"][0], PARTICLE_THRESHOLD)
        return plotter
