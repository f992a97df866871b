#!/usr/bin/env bash
# The GPU checks of issue 19 as one script (run from anywhere on a machine with a CUDA GPU):
#   benchmarks/forward.py, protocol.py, grid.py and train.py with --device cuda, then the CUDA
#   correctness tests (tests/test_cuda.py: oracle nets CUDA vs CPU, one solver step, the protocol
#   oracle through run.py --device cuda).  Logs go to $OUT (default ./gpu-checks); each step has
#   its own time limit so the whole script stays under 8 minutes; a failing step does not stop
#   the others, and the exit status is 1 when any step failed.
#
# The oracle and upstream files: $CAFFE_ORACLE_DIR / $UPSTREAM_DIR, else ../shared/..., else
# ./shared/... (the first that exists).
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
LOGS="${OUT:-$REPO/gpu-checks}"
mkdir -p "$LOGS"
for base in "$REPO/../shared" "$REPO/shared"; do
  if [ -z "${CAFFE_ORACLE_DIR:-}" ] && [ -d "$base/caffe-oracle" ]; then export CAFFE_ORACLE_DIR="$base/caffe-oracle"; fi
  if [ -z "${UPSTREAM_DIR:-}" ] && [ -d "$base/upstream" ]; then export UPSTREAM_DIR="$base/upstream"; fi
done
MIRROR="${UPSTREAM_DIR:+$UPSTREAM_DIR/lapuschkin-2017}"
CACHE="${TMPDIR:-/tmp}/converters-bench"
failed=0

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOGS/summary.txt"
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s" | tee -a "$LOGS/summary.txt"
  tail -n 25 "$LOGS/$name.log"
  [ "$rc" -eq 0 ] || failed=1
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1;
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())";
  echo "CAFFE_ORACLE_DIR=${CAFFE_ORACLE_DIR:-unset} UPSTREAM_DIR=${UPSTREAM_DIR:-unset}"; } > "$LOGS/environment.txt" 2>&1
cat "$LOGS/environment.txt"

step cuda_tests 150 python -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
step forward 120 python benchmarks/forward.py --device cuda --no-opencv --runs 10 --warmup 3 --cache "$CACHE" --json "$LOGS/forward.json"
step protocol 70 python benchmarks/protocol.py --device cuda --images 200 --batch 20 ${MIRROR:+--assets-mirror "$MIRROR"} --json "$LOGS/protocol.json"
step grid 70 python benchmarks/grid.py --device cuda --sample 200 --cache "$CACHE" ${MIRROR:+--assets-mirror "$MIRROR"} --json "$LOGS/grid.json"
step train 60 python benchmarks/train.py --device cuda --iters 10 --warmup 3
echo "failed=$failed" | tee -a "$LOGS/summary.txt"
exit "$failed"
