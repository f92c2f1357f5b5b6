"""Where the benchmarks find what is not in the repository, read by the
scripts of every benchmark: the labelled beta-galactosidase micrographs
($CRYOPRUNE_BETAGAL, default ../shared/data/betagal_empiar10017 beside the
clone) and the peers' virtual environments made by benchmarks/make_envs.sh
($CRYOPRUNE_BENCH_ENVS, default benchmarks/envs)."""
import os

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
BETAGAL_DIR = os.environ.get("CRYOPRUNE_BETAGAL", os.path.normpath(os.path.join(
    BENCHMARKS, "..", "..", "shared", "data", "betagal_empiar10017")))
PEER_ENVS = os.environ.get("CRYOPRUNE_BENCH_ENVS", os.path.join(BENCHMARKS, "envs"))


def peer_program(peer, program):
    """A program of a peer's environment, e.g. peer_program('topaz', 'topaz')."""
    return os.path.join(PEER_ENVS, peer, "bin", program)
