"""The plugin's viewers; Scipion finds every viewer class imported here."""
from .viewer_yolo import CryoPruneYoloTrainingViewer
