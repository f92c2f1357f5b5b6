"""The plugin's viewers; Scipion finds every viewer class imported here."""
from .viewer_yolo import CryoPruneYoloTrainingViewer
from .viewer_picks import CryoPrunePicksViewer
from .viewer_classes import CryoPruneClassGalleryViewer
from .viewer_pruner import CryoPrunePrunerTrainingViewer
