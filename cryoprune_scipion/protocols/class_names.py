"""Default class names made from the input sets: the view classes of YOLO
training (one coordinate set each) and the junk classes of pruner training
(one bad set each)."""
import re

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
OUTPUT_PREFIX = re.compile(r"^output[A-Z][A-Za-z0-9]*?(_|$)")  # outputCoordinates_


def sanitise(text):
    """Letters, digits and single underscores: 'import ice (2)' -> 'import_ice_2'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text or "").strip("_")


def inputSetName(pointer):
    """What the user knows the set by: its label; else the output name of the
    protocol that made it without the set type (outputCoordinates_ice: ice);
    else that protocol's run name. Sanitised; empty when none is left."""
    inputSet, source = pointer.get(), pointer.getObjValue()
    candidates = [inputSet.getObjLabel() if inputSet is not None else ""]
    if pointer.hasExtended() and hasattr(source, "getRunName"):  # a protocol's output
        candidates += [OUTPUT_PREFIX.sub("", pointer.getExtended()), source.getRunName()]
    return next((name for name in map(sanitise, candidates) if name), "")


def namesFromInputs(pointers, prefix, reserved=()):
    """One valid, distinct name per input set: its `inputSetName`, starting
    with `prefix` when it starts with a digit, numbered (ice, ice_2) when
    taken; `prefix` and the set's position (junk1) when it has no name."""
    names = []
    for position, pointer in enumerate(pointers, 1):
        name = inputSetName(pointer) or "%s%d" % (prefix, position)
        if not NAME_PATTERN.match(name):
            name = "%s_%s" % (prefix, name)
        unique, count = name, 1
        while unique in names or unique in reserved:
            count += 1
            unique = "%s_%d" % (name, count)
        names.append(unique)
    return names
