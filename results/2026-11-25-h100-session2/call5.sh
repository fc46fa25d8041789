#!/usr/bin/env bash
# Device call 5, fresh machine: ad1c76e (patched, speed profile) through launch_a10.sh alone under a
# 24 GiB budget, after call 2 showed its frontend needs `wetext` (now stubbed in bench/stubs/wetext):
# smoke, per-request flow steps 3/5/10 and invalid values, memory.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-480}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
export LAUNCH_ENV="SIZE=24g"
CALL_BUDGET=$(left) bash bench/gpu_proof.sh setup budget:24 memwatch:10 launch:q:p110:speed:18083 wait:q \
    smoke:q steps:q memreport report > "$OUT/call5.log" 2>&1
grep "gpu_proof +" "$OUT/call5.log" | tail -12
