"""The plugin's protocols; Scipion finds every protocol class imported here."""
from .protocol_yolo_training import CryoPruneProtYoloTraining
from .protocol_yolo_picking import CryoPruneProtYoloPicking
from .protocol_pruner_training import CryoPruneProtPickerOptimizerTraining
from .protocol_pruning import CryoPruneProtPickerOptimizer
from .protocol_contrastive_2d import CryoPruneProtContrastive2D
from .protocol_score_subset import CryoPruneProtScoreSubset
from .protocol_extraction import CryoPruneProtExtractParticles
