#!/usr/bin/env bash
# The speed goals, measured: every row of the goals table in bench/README.md ("Speed at the
# sizes people train"), one BLAS thread, CPU clock. Writes OUT/*.json and OUT/*.txt.
#   bash bench/speed_goals.sh OUT [PEER]     (PEER: a checkout of omarschall/vanilla-rtrl)
set -euo pipefail
out=${1:?usage: bash bench/speed_goals.sh OUT [PEER]}
peer=${2:-}
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
here=$(dirname "$0")
st() { python "$here/step_time.py" --clock cpu --depth 1 --through sequence --length 64 \
         --min-seconds "${SECONDS_PER_ROW:-1}" --repeats 5 "$@"; }
# kf and ok (rank 4, 8, 16) at n = 128: copy shape (B = 16, 4 symbols) and PTB (B = 32, 50)
st --algo kf ok:4 ok:8 ok:16 --sizes 128 --batch 16 --n-in 4 --n-out 4 --dtype float32 float64 \
   --json "$out/copy_n128.json" | tee "$out/copy_n128.txt"
st --algo kf ok:4 ok:8 ok:16 --sizes 128 --batch 32 --n-in 50 --n-out 50 --dtype float32 float64 \
   --json "$out/ptb_n128.json" | tee "$out/ptb_n128.txt"
# the same at n = 64, PTB shape
st --algo kf ok:4 ok:8 ok:16 --sizes 64 --batch 32 --n-in 50 --n-out 50 --dtype float32 float64 \
   --json "$out/ptb_n64.json" | tee "$out/ptb_n64.txt"
# rtrl at n = 64, B = 16
st --algo rtrl --sizes 64 --batch 16 --n-in 50 --n-out 50 --dtype float32 float64 \
   --json "$out/rtrl_n64.json" | tee "$out/rtrl_n64.txt"
# batch 1 against the peer, per recurrent parameter
if [ -n "$peer" ]; then
  python "$here/compare_vanilla_rtrl.py" --peer "$peer" --sizes 32 64 128 --rounds 5 \
     --json "$out/peer.json" | tee "$out/peer.txt"
fi
# a driver's steps/s against the online step of the same shape
python "$here/driver_vs_step.py" --json "$out/driver.json" | tee "$out/driver.txt"
