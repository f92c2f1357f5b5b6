#!/bin/sh
# Make the virtual environments of the benchmarks' peers from their
# requirements files, one environment each, so that their packages never
# meet the plugin's:
#
#   benchmarks/make_envs.sh [topaz] [aspire]     (default: both)
#
# The environments go to $CRYOPRUNE_BENCH_ENVS (default benchmarks/envs, ignored
# by git), where benchmarks/picking/run_topaz.py and
# benchmarks/classification/bench_simulated.py look for them. PYTHON picks
# the interpreter (default python3). An environment that exists is updated.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
envs=${CRYOPRUNE_BENCH_ENVS:-$here/envs}
python=${PYTHON:-python3}

requirements() {
    case $1 in
        topaz) echo "$here/picking/requirements-topaz.txt" ;;
        aspire) echo "$here/classification/requirements-aspire.txt" ;;
        *) echo "make_envs.sh: unknown peer '$1': use topaz or aspire" >&2; exit 2 ;;
    esac
}

[ $# -gt 0 ] || set -- topaz aspire
for peer in "$@"; do
    file=$(requirements "$peer")
    echo "== $peer: $envs/$peer from $file"
    "$python" -m venv "$envs/$peer"
    "$envs/$peer/bin/python" -m pip install --upgrade pip
    "$envs/$peer/bin/python" -m pip install -r "$file"
done
