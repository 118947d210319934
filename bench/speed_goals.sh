#!/usr/bin/env bash
# The speed goals, measured: every row of the goals table in bench/README.md ("The speed
# goals"), one BLAS thread, CPU clock. Writes OUT/*.json and OUT/*.txt.
#   bash bench/speed_goals.sh OUT [PEER]     (PEER: a checkout of omarschall/vanilla-rtrl)
# PARTS (default "steps allocator peer driver") picks what runs:
#   steps      step / floor through sequence_gradient (glibc's default allocator settings)
#   allocator  the same rows with the drivers' allocator settings, into OUT/allocator/
#   peer       batch 1 against the peer, per recurrent parameter (needs PEER)
#   driver     a driver's steps/s against the online step of the same shape
# THREADS=default leaves the BLAS thread variables as they are (the default-thread figures).
set -euo pipefail
out=${1:?usage: bash bench/speed_goals.sh OUT [PEER]}
peer=${2:-}
parts=${PARTS:-steps allocator peer driver}
if [ "${THREADS:-1}" != default ]; then export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; fi
here=$(dirname "$0")
st() { python "$here/step_time.py" --clock cpu --depth 1 --through sequence --length 64 \
         --min-seconds "${SECONDS_PER_ROW:-1}" --repeats 5 "$@"; }
rows() {  # the step / floor rows into folder $1
  mkdir -p "$1"
  # kf and ok (rank 4, 8, 16) at n = 128: copy shape (B = 16, 4 symbols) and PTB (B = 32, 50)
  st --algo kf ok:4 ok:8 ok:16 --sizes 128 --batch 16 --n-in 4 --n-out 4 --dtype float32 float64 \
     --json "$1/copy_n128.json" | tee "$1/copy_n128.txt"
  st --algo kf ok:4 ok:8 ok:16 --sizes 128 --batch 32 --n-in 50 --n-out 50 --dtype float32 float64 \
     --json "$1/ptb_n128.json" | tee "$1/ptb_n128.txt"
  # the same at n = 64, PTB shape
  st --algo kf ok:4 ok:8 ok:16 --sizes 64 --batch 32 --n-in 50 --n-out 50 --dtype float32 float64 \
     --json "$1/ptb_n64.json" | tee "$1/ptb_n64.txt"
  # rtrl at n = 64, B = 16
  st --algo rtrl --sizes 64 --batch 16 --n-in 50 --n-out 50 --dtype float32 float64 \
     --json "$1/rtrl_n64.json" | tee "$1/rtrl_n64.txt"
}
mkdir -p "$out"
case " $parts " in *" steps "*) rows "$out" ;; esac
# the drivers' mallopt settings, as environment variables of the same process
case " $parts " in *" allocator "*)
  MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 rows "$out/allocator" ;; esac
# batch 1 against the peer, per recurrent parameter
case " $parts " in *" peer "*)
  if [ -n "$peer" ]; then
    python "$here/compare_vanilla_rtrl.py" --peer "$peer" --sizes 32 64 128 --rounds 5 \
       --json "$out/peer.json" | tee "$out/peer.txt"
  fi ;; esac
# a driver's steps/s against the online step of the same shape
case " $parts " in *" driver "*)
  python "$here/driver_vs_step.py" --json "$out/driver.json" | tee "$out/driver.txt" ;; esac
