#!/usr/bin/env bash
# Goal 2 of issue 15 (many cores) as one prepared run on a lent 16-core device machine.
#
#   bash benchmarks/device_goal2.sh prepare   # here: the wheels the device lacks, into .whl/
#   bash benchmarks/device_goal2.sh run       # there, as the device tool's command, carry [".whl"]
#
# The device's image has Python 3.12 with pandas, pyarrow, numpy, pyyaml, psutil, tqdm, attrs
# and scipy, but not pydantic or cattrs, and it cannot download anything; `prepare` fetches
# this checkout's versions of what is missing as cp312 wheels. `run` fits one 10-minute call:
# cores.py at 2 repeats (session 5 took 8.1 min at 3) and driver_share.py at 16 workers, their
# reports written under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=(pydantic pydantic-core annotated-types typing-inspection cattrs)

case "${1:-}" in
prepare)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    rm -rf .whl
    for name in "${missing[@]}"; do
        version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$name==$version"
    done
    ls -1 .whl
    ;;
run)
    : "${OUT:?run this on the device machine, where OUT is set}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    nproc | tee "$OUT/nproc.txt"
    timeout 420 python3 -m benchmarks.cores --repeats 2 --cap-s 120 --json "$OUT/cores.json" \
        2>&1 | tee "$OUT/cores.log" || echo "cores.py ended with $?"
    timeout 120 python3 -m benchmarks.driver_share --workers 16 --json "$OUT/driver_share16.json" \
        2>&1 | tee "$OUT/driver_share16.log" || echo "driver_share.py ended with $?"
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
