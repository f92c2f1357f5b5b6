"""The one border between Scipion objects and the plain files the CLI reads
and writes.

Coordinates: Scipion keeps a particle centre as integer pixels (x column,
y row, origin at the top-left pixel of the image as read); the CLI's CSV
files use the same convention with float values, so the conversion is a
copy plus rounding, for square and rectangular micrographs alike.

Micrographs are passed to the CLI as links named after their id
(`mic_000012.mrc`), so that two micrographs with the same base name in
different folders never share a coordinate file.
"""
import os
from collections import defaultdict

import pyworkflow.object as pwobj
from pwem.objects import Coordinate

from .constants import CLASS_ATTR, JUNK_CLASS_ATTR, PARTICLE_SCORE_ATTR, SCORE_ATTR
from .engine.io import InputError, read_coordinates, write_table


def micrographStem(micId):
    """The base name, without suffix, of a micrograph's link and of its
    coordinate file."""
    return "mic_%06d" % micId


def micrographSuffix(mic):
    return os.path.splitext(mic.getFileName())[1]


def linkMicrographs(mics, folder):
    """Link each micrograph into `folder` under a name made from its id;
    returns the link paths in the order of `mics`. Nothing is written next
    to the input files."""
    os.makedirs(folder, exist_ok=True)
    links = []
    for mic in mics:
        link = os.path.join(folder, micrographStem(mic.getObjId()) + micrographSuffix(mic))
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(mic.getFileName()), link)
        links.append(link)
    return links


def coordinatesPath(folder, micId):
    return os.path.join(folder, micrographStem(micId) + ".csv")


def micrographKeys(coordSet):
    """(micId, micName) of the micrographs a SetOfCoordinates lies on."""
    values = coordSet.getUniqueValues(["_micId", "_micName"])
    return set(zip(values["_micId"], values["_micName"]))


def isOnMicrograph(micId, micName, mics):
    """Whether a coordinate with this micrograph id and name lies on one of
    `mics` ({micId: micName}): same id, and same name when it has one (ids
    alone can clash between sets imported separately)."""
    return micId in mics and (not micName or micName == mics[micId])


def writeCoordinatesCsv(coordSets, classNames, folder, mics):
    """Write the coordinates of several SetOfCoordinates, one per view
    class, to `folder/mic_<id>.csv` files with columns x, y, class.

    Only coordinates on `mics` ({micId: micName}) are written. Returns
    {micId: number of coordinates written}.
    """
    rows = defaultdict(list)
    for coordSet, className in zip(coordSets, classNames):
        for coord in coordSet.iterItems(orderBy="_micId"):
            if isOnMicrograph(coord.getMicId(), coord.getMicName(), mics):
                rows[coord.getMicId()].append({"x": coord.getX(), "y": coord.getY(),
                                               "class": className})
    os.makedirs(folder, exist_ok=True)
    for micId, micRows in rows.items():
        write_table(coordinatesPath(folder, micId), ["x", "y", "class"], micRows)
    return {micId: len(micRows) for micId, micRows in rows.items()}


def readCoordinatesCsv(path, mic, coordSet, classNames=None):
    """Append the picks of one micrograph (a `cryoprune pick` CSV with
    x, y, score, class) to `coordSet`, each with its score and view class as
    extra attributes. Picks of a class not in `classNames` are an error (the
    CSV does not come from this model). Returns the number of coordinates
    added."""
    rows = read_coordinates(path)
    if rows and not {"score", "class"} <= set(rows[0]):
        raise InputError("%s: a pick file needs the columns x, y, score, class; "
                         "pick again with `cryoprune pick`" % path)
    for row in rows:
        className = row["class"]
        if classNames is not None and className not in classNames:
            raise InputError("%s: pick of unknown view class '%s' (the model knows "
                             "%s); pick again with the right model"
                             % (path, className, ", ".join(classNames)))
        coord = Coordinate()
        coord.setMicrograph(mic)
        coord.setPosition(int(round(row["x"])), int(round(row["y"])))
        setattr(coord, SCORE_ATTR, pwobj.Float(float(row["score"])))
        setattr(coord, CLASS_ATTR, pwobj.String(className))
        coordSet.append(coord)
    return len(rows)


def getCoordinateClass(coord):
    return getattr(coord, CLASS_ATTR).get()


# ------------------------------------------------------- 2D classification

MRC_STACK_SUFFIXES = (".mrc", ".mrcs", ".st")


def writeParticleStack(particles, path, batch=1024):
    """Copy the images of a SetOfParticles, in id order, into one MRC stack
    at `path` (written through a memory map, so any number of particles
    needs little memory). Returns the particle ids in stack order."""
    import mrcfile
    import numpy as np
    ids, locations = [], []
    for particle in particles.iterItems(orderBy="id"):
        ids.append(particle.getObjId())
        index, fileName = particle.getLocation()
        locations.append((max(index, 1) - 1, fileName))
    sources = {}
    for _, fileName in locations:
        if fileName not in sources:
            sources[fileName] = _openParticleFile(fileName)
    box = sources[locations[0][1]].shape[-1]
    for fileName, data in sources.items():
        if data.shape[-2:] != (box, box):
            raise InputError("%s: particles of %s px, but others are %d x %d px; "
                             "all particles must have one box size"
                             % (fileName, " x ".join(map(str, data.shape[-2:])), box, box))
    partial = path + ".partial"
    with mrcfile.new_mmap(partial, shape=(len(ids), box, box), mrc_mode=2,
                          overwrite=True) as mrc:
        for start in range(0, len(ids), batch):
            chunk = locations[start:start + batch]
            mrc.data[start:start + len(chunk)] = np.stack(
                [sources[fileName][index] for index, fileName in chunk])
        mrc.voxel_size = particles.getSamplingRate()
    os.replace(partial, path)
    return ids


def _openParticleFile(fileName):
    from .engine.io import read_stack
    if os.path.splitext(fileName)[1].lower() not in MRC_STACK_SUFFIXES:
        raise InputError("%s: particles must be in MRC stacks (.mrcs); convert them "
                         "first, e.g. with a RELION or Xmipp extraction" % fileName)
    return read_stack(fileName)


def writeParticleCtfCsv(particles, path):
    """index,defocus_u,defocus_v,defocus_angle (Angstrom, degrees) of each
    particle in id order, the CTF table of `cryoprune classify2d --ctf`."""
    rows = []
    for index, particle in enumerate(particles.iterItems(orderBy="id")):
        ctf = particle.getCTF()
        rows.append({"index": index, "defocus_u": ctf.getDefocusU(),
                     "defocus_v": ctf.getDefocusV(), "defocus_angle": ctf.getDefocusAngle()})
    write_table(path, ["index", "defocus_u", "defocus_v", "defocus_angle"], rows)


def alignmentToTransform(angle, shiftX, shiftY):
    """A 2D alignment as a pwem Transform.

    The engine's (angle, shift) take the class average onto the particle: a
    rotation by `angle` degrees (x towards y) about the centre, then the
    shift in pixels. Scipion's 2D alignment matrix goes the other way, as
    Xmipp applies it: it brings the particle onto the class average, so the
    matrix is the inverse motion."""
    import numpy as np
    from pwem.objects import Transform
    theta = np.radians(angle)
    motion = np.eye(4)
    motion[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    motion[:2, 3] = shiftX, shiftY
    return Transform(np.linalg.inv(motion))


def transformToAlignment(transform):
    """(angle in degrees, shift x, shift y) of a Transform made by
    `alignmentToTransform`."""
    import numpy as np
    motion = np.linalg.inv(transform.getMatrix())
    angle = np.degrees(np.arctan2(motion[1, 0], motion[0, 0])) % 360
    return float(angle), float(motion[0, 3]), float(motion[1, 3])


def readAlignmentCsv(path):
    """Rows of a classify2d `alignment.csv` in index order, with numbers
    converted: index and class as int, angle, shifts and weight as float."""
    import csv
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            yield {"index": int(row["index"]), "class": int(row["class"]),
                   "angle": float(row["angle"]), "shift_x": float(row["shift_x"]),
                   "shift_y": float(row["shift_y"]), "weight": float(row["weight"])}


# ----------------------------------------------------------------- pruning

def writeParticleTable(particles, folder):
    """The particles (a list of Particle) as a folder `cryoprune train-pruner`
    and `prune` read like an extract output, without copying an image: each
    MRC stack they lie in linked as stack_<n>.mrcs, and particles.csv with
    micrograph (the link's stem), index (0-based) and id per particle, in
    list order."""
    os.makedirs(folder, exist_ok=True)
    stems, rows = {}, []
    for particle in particles:
        index, fileName = particle.getLocation()
        if fileName not in stems:
            if os.path.splitext(fileName)[1].lower() not in MRC_STACK_SUFFIXES:
                raise InputError("%s: particles must be in MRC stacks (.mrcs); convert "
                                 "them first, e.g. with a RELION or Xmipp extraction"
                                 % fileName)
            stems[fileName] = "stack_%04d" % len(stems)
            link = os.path.join(folder, stems[fileName] + ".mrcs")
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.abspath(fileName), link)
        rows.append({"micrograph": stems[fileName], "index": max(index, 1) - 1,
                     "id": particle.getObjId()})
    write_table(os.path.join(folder, "particles.csv"), ["micrograph", "index", "id"], rows)


def writeCoordinateExtraction(coords, micrographs, folder):
    """The input of a `cryoprune extract` job for `coords` (a list of
    Coordinate): their micrographs (of the SetOfMicrographs `micrographs`)
    linked into folder/micrographs and one coordinate table per micrograph
    in folder/coordinates. Returns the micrograph links."""
    byMic = defaultdict(list)
    for coord in coords:
        byMic[coord.getMicId()].append(coord)
    mics = []
    for micId, micCoords in byMic.items():
        mic = micrographs[micId]
        if mic is None:
            raise InputError("coordinate %d lies on micrograph %d, which is not in the "
                             "micrographs of the coordinates"
                             % (micCoords[0].getObjId(), micId))
        mics.append(mic.clone())
    coordsDir = os.path.join(folder, "coordinates")
    os.makedirs(coordsDir, exist_ok=True)
    for micId, micCoords in byMic.items():
        writeExtractionCoordinates(micCoords, 1.0, coordinatesPath(coordsDir, micId))
    return linkMicrographs(mics, os.path.join(folder, "micrographs"))


def mergeWindowFolders(sources, folder):
    """One folder that `cryoprune train-pruner` reads as one class, made of
    the windows of several extract or particle-table folders without copying
    an image: `sources` are (folder, ids) pairs, the windows of the items
    `ids` (None: all) taken from each, in its row order; each stack is
    linked under a stem made unique by the source's position. Returns the
    number of windows taken from each source."""
    import csv
    os.makedirs(folder, exist_ok=True)
    rows, counts = [], []
    for number, (source, ids) in enumerate(sources):
        with open(os.path.join(source, "particles.csv"), newline="") as f:
            taken = [row for row in csv.DictReader(f) if ids is None or int(row["id"]) in ids]
        for stem in dict.fromkeys(row["micrograph"] for row in taken):
            link = os.path.join(folder, "s%d_%s.mrcs" % (number, stem))
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.abspath(os.path.join(source, stem + ".mrcs")), link)
        rows += [{"micrograph": "s%d_%s" % (number, row["micrograph"]),
                  "index": row["index"], "id": row["id"]} for row in taken]
        counts.append(len(taken))
    write_table(os.path.join(folder, "particles.csv"), ["micrograph", "index", "id"], rows)
    return counts


def readPruningScores(path):
    """(score, label) per window of a `cryoprune prune` CSV, in index order."""
    import csv
    with open(path, newline="") as f:
        rows = [(int(r["index"]), float(r["score"]), r["label"]) for r in csv.DictReader(f)]
    rows.sort()
    if [r[0] for r in rows] != list(range(len(rows))):
        raise InputError("%s: the indices are not 0..n-1; prune again" % path)
    return [(score, label) for _, score, label in rows]


def setPruningAttributes(item, score, label):
    """The pruner's probability of being a particle and predicted class,
    beside any picker's confidence and view class the item carries."""
    setattr(item, PARTICLE_SCORE_ATTR, pwobj.Float(score))
    setattr(item, JUNK_CLASS_ATTR, pwobj.String(label))


# -------------------------------------------------------------- extraction

def writeExtractionCoordinates(coords, scale, path):
    """The coordinates of one micrograph as a `cryoprune extract` table:
    x, y (times `scale`, for micrographs of another pixel size than those
    picked on) and id, the coordinate's id, carried over to the particles."""
    write_table(path, ["x", "y", "id"],
                [{"x": coord.getX() * scale, "y": coord.getY() * scale,
                  "id": coord.getObjId()} for coord in coords])


def writeMicrographCtfCsv(mics, path):
    """micrograph,defocus_u,defocus_v,defocus_angle (Angstrom, degrees) of
    each micrograph, named like its link: the CTF table of `cryoprune
    extract --ctf`."""
    rows = []
    for mic in mics:
        ctf = mic.getCTF()
        rows.append({"micrograph": micrographStem(mic.getObjId()),
                     "defocus_u": ctf.getDefocusU(), "defocus_v": ctf.getDefocusV(),
                     "defocus_angle": ctf.getDefocusAngle()})
    write_table(path, ["micrograph", "defocus_u", "defocus_v", "defocus_angle"], rows)


def readParticleIds(folder):
    """The id column of the particles.csv in `folder`, in row order: the
    item each window of an extract folder belongs to."""
    import csv
    with open(os.path.join(folder, "particles.csv"), newline="") as f:
        return [int(row["id"]) for row in csv.DictReader(f)]


def readExtractedParticles(folder):
    """{micrograph stem: [(index in its stack, coordinate id), ...]} from the
    particles.csv that `cryoprune extract` wrote in `folder`."""
    import csv
    particles = defaultdict(list)
    with open(os.path.join(folder, "particles.csv"), newline="") as f:
        for row in csv.DictReader(f):
            particles[row["micrograph"]].append((int(row["index"]), int(row["id"])))
    return particles
