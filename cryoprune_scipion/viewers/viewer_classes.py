"""The 2D classes of the contrastive classification: a gallery of the
averages with their sizes and scores, and Scipion's class viewer (where
classes are selected into subsets) showing the same fields."""
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from ..constants import CORRELATION_ATTR, RESOLUTION_ATTR
from ..engine.io import read_stack
from ..engine.ranking import ORDERS
from ..protocols import CryoPruneProtContrastive2D
from ..protocols.protocol_contrastive_2d import CLASS_ORDERS, OUTPUT_CLASSES
from ..engine.plots import ClassAverage, draw_class_gallery

CLASS_FIELDS = "id _size %s %s" % (RESOLUTION_ATTR, CORRELATION_ATTR)


def readClassAverages(classes):
    """A ClassAverage per class of a SetOfClasses2D, image from its
    representative."""
    stacks = {}
    averages = []
    for classItem in classes.iterItems(orderBy="id"):
        index, path = classItem.getRepresentative().getLocation()
        if path not in stacks:
            stacks[path] = read_stack(path, mmap=False)
        averages.append(ClassAverage(classItem.getObjId(), classItem.getSize(),
                                     stacks[path][index - 1],
                                     classItem.getAttributeValue(RESOLUTION_ATTR),
                                     classItem.getAttributeValue(CORRELATION_ATTR)))
    return averages


class CryoPruneClassGalleryViewer(ProtocolViewer):
    """Class averages in a grid, by size or by resolution, each with its
    number, size, half-set resolution and mean correlation."""
    _label = "class gallery"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoPruneProtContrastive2D]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("classOrder", params.EnumParam, choices=list(ORDERS),
                      default=ORDERS.index(CLASS_ORDERS[self.protocol.classOrder.get()]),
                      label="Order classes by",
                      help="size: the largest first; resolution: the best half-set FRC "
                           "resolution first (ties by mean correlation). Starts at the "
                           "order of the run.")
        form.addParam("displayGallery", params.LabelParam, label="Class gallery",
                      help="The averages in a grid, captioned with number, particle "
                           "count, resolution (A) and mean correlation (cc).")
        form.addParam("displayClasses", params.LabelParam,
                      label="Classes in Scipion's class viewer",
                      help="Scipion's viewer of the classes with their size and scores; "
                           "select classes there to make a subset.")

    def _getVisualizeDict(self):
        return {"displayGallery": self._showGallery, "displayClasses": self._showClasses}

    def _classes(self):
        return getattr(self.protocol, OUTPUT_CLASSES)

    def _showGallery(self, paramName=None):
        from pwem.viewers import EmPlotter
        plotter = EmPlotter(figsize=(8, 8), windowTitle=self.protocol.getRunName())
        plotter.tightLayoutOn = False  # the gallery lays itself out
        draw_class_gallery(plotter.getFigure(), readClassAverages(self._classes()),
                           ORDERS[self.classOrder.get()])
        return [plotter]

    def _showClasses(self, paramName=None):
        from pwem.viewers import ClassesView
        from pwem.viewers.showj import LABELS, ORDER, VISIBLE
        classes = self._classes()
        fields = "enabled %s _representative._filename" % CLASS_FIELDS
        return [ClassesView(self.getProject(), classes.strId(), classes.getFileName(),
                            viewParams={ORDER: fields, VISIBLE: fields,
                                        LABELS: CLASS_FIELDS})]
