"""Pictures for people: picks drawn on a micrograph."""
import numpy as np

from .preprocess import WorkingGrid, resize, to_uint8

PALETTE = [(230, 60, 60), (60, 160, 255), (80, 200, 80), (240, 180, 40), (200, 90, 220)]


def draw_picks(micrograph, picks, box_size, path, class_names=None, max_side=1024):
    """Save a PNG of the micrograph (shrunk to `max_side`) with a circle of
    the box diameter at each pick, one colour per view class."""
    from PIL import Image, ImageDraw
    grid = WorkingGrid.for_shape(micrograph.shape, min(max_side, max(micrograph.shape)))
    picture = Image.fromarray(to_uint8(resize(micrograph, grid.working_shape))).convert("RGB")
    draw = ImageDraw.Draw(picture)
    class_names = class_names or sorted({p["class"] for p in picks})
    radius = box_size * grid.scale_x / 2
    for pick in picks:
        x, y = (float(v) for v in grid.to_working(pick["x"], pick["y"]))
        colour = PALETTE[class_names.index(pick["class"]) % len(PALETTE)]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour,
                     width=2)
    picture.save(path)
    return np.asarray(picture)
