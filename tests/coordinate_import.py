"""Coordinates brought into a test project as a user would: a
ProtImportCoordinates run reading a Scipion sqlite file (an import that
needs no other plugin)."""
import itertools

from pwem.objects import Coordinate, SetOfCoordinates
from pwem.protocols import ProtImportCoordinates

_files = itertools.count()


def new_coordinates(micrograph, centres):
    """Coordinates at the (x, y) `centres` of `micrograph`, in no set yet."""
    coords = []
    for x, y in centres:
        coord = Coordinate()
        coord.setMicrograph(micrograph)
        coord.setPosition(round(x), round(y))
        coords.append(coord)
    return coords


def import_coordinates(test, micrographs, centres, box_size, label, attributes=None):
    """Run an import of the coordinates at `centres(micrograph)` (x, y) on
    each of `micrographs`, named `label`; returns the finished protocol.
    `attributes(coord)`, when given, returns extra attributes ({name: a
    pyworkflow object}) set on each coordinate, as a picker sets them."""
    path = test.getOutputPath("coordinates%d.sqlite" % next(_files))
    coordSet = SetOfCoordinates(filename=path)
    coordSet.setBoxSize(box_size)
    for micrograph in micrographs:
        for coord in new_coordinates(micrograph, centres(micrograph)):
            for name, value in (attributes(coord) if attributes else {}).items():
                setattr(coord, name, value)
            coordSet.append(coord)
    coordSet.write()
    coordSet.close()
    prot = test.newProtocol(ProtImportCoordinates,
                            importFrom=ProtImportCoordinates.IMPORT_FROM_SCIPION,
                            filesPath=path, inputMicrographs=micrographs, boxSize=box_size)
    prot.setObjLabel(label)  # newProtocol does not keep an objLabel keyword
    return test.launchProtocol(prot)
