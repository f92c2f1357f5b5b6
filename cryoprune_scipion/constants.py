"""Names shared by the protocols, the converters and the CLI."""

# Plugin variables
PYTHON_VAR = "CRYOPRUNE_PYTHON"
MODELS_DIR_VAR = "CRYOPRUNE_MODELS"

# Extra attributes stored on set items, copied on by Scipion's subsets,
# extraction (on the particle's coordinate) and classification.
# The picker's: its confidence and the predicted view class
SCORE_ATTR = "_cryopruneScore"
CLASS_ATTR = "_cryopruneClass"
# The pruner's, beside the picker's: the probability of being a particle and
# the predicted class (`particle` or a junk class)
PARTICLE_SCORE_ATTR = "_cryopruneParticleScore"
JUNK_CLASS_ATTR = "_cryopruneJunkClass"
# ... of a pick whose box crosses the micrograph edge: not extracted, so not
# scored (particle score 0) and discarded
EDGE_CLASS = "edge"
# The (score, class) attributes of each scoring step, by the step's name
SCORES = {"picker": (SCORE_ATTR, CLASS_ATTR), "pruner": (PARTICLE_SCORE_ATTR, JUNK_CLASS_ATTR)}
# ... on 2D classes (issue 11): half-set FRC resolution (A) and mean alignment correlation
RESOLUTION_ATTR = "_cryopruneResolution"
CORRELATION_ATTR = "_cryopruneMeanCorrelation"

# Choices of the YOLO training form
YOLO_FAMILIES = ["yolov8", "yolo11"]
YOLO_SIZES = ["n", "s", "m", "l", "x"]

# Files that a trained model folder holds next to its weights
MODEL_WEIGHTS = "model.pt"
MODEL_METADATA = "model.json"

# Subfolder of the plugin's model folder where `cryoprune base-pruner` keeps the
# base pruner of each backbone
BASE_PRUNER_DIR = "base-pruner"
