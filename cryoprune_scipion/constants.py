"""Names shared by the protocols, the converters and the CLI."""

# Plugin variables
PYTHON_VAR = "CRYOPRUNE_PYTHON"
MODELS_DIR_VAR = "CRYOPRUNE_MODELS"

# Extra attributes stored on set items
SCORE_ATTR = "_cryopruneScore"
CLASS_ATTR = "_cryopruneClass"
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
