"""The eight copies of an image by quarter turns and a mirror, for
test-time augmentation: a particle seen turned or mirrored is still the same
particle, so picking and pruning average over copies."""
import numpy as np

# how many copies can be averaged: the first 1, 2, 4 or 8 of `dihedral_copies(8)`
TTA_COPIES = (1, 2, 4, 8)


def dihedral_copies(count):
    """The first `count` (of TTA_COPIES) of the eight copies of an image by
    quarter turns and a mirror, as (quarter turns, mirrored); 2 adds the
    mirror, 4 the half turn, 8 the quarter turns."""
    return [(turns, mirror) for turns in (0, 2, 1, 3) for mirror in (False, True)][:count]


def dihedral_copy(image, turns, mirror):
    """A copy of a 2D image, or of a batch of them along the last two axes
    (numpy array or torch tensor): `turns` counter-clockwise quarter turns,
    then the columns reversed if `mirror`."""
    if isinstance(image, np.ndarray):
        turned = np.rot90(image, turns, axes=(-2, -1))
        return turned[..., ::-1] if mirror else turned
    turned = image.rot90(turns, dims=(-2, -1))
    return turned.flip(-1) if mirror else turned
