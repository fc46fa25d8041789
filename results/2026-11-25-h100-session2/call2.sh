#!/usr/bin/env bash
# shellcheck disable=SC2129 # one redirect per step keeps each line a device step
# Device call 2, on the machine call 1 left warm: the ladder's top (c=12, 16), then e stops and the budget
# goes; the 8-minute soak on p starts in the background (setsid: it runs on into call 3), and the rest of
# issue 9/10 starts at once: u = unpatched 30bc57b with the launcher's 24g sizes, q = patched ad1c76e
# (speed), pq / pf = patched 30bc57b quality / fp16 profiles. Then the lost-response pair u vs p in the
# background (320 each), the profiles' smoke runs, and per-request steps on ad1c76e.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-570}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; W=/tmp/lt-bench
export LAUNCH_ENV="SIZE=24g"
L="$OUT/call2.log"
LADDER_CELLS=stream:12:1,stream:16:1 LADDER_ROUNDS=1 CALL_BUDGET=$(left) $G ladder:e,p stopone:e unbudget > "$L" 2>&1
bg() {  # NAME PHASE...: a gpu_proof run that outlives this call; results in $W/bg-NAME
    local name=$1; shift
    mkdir -p "$W/bg-$name"
    OUT=$W/bg-$name CALL_BUDGET=900 setsid bash bench/gpu_proof.sh "$@" > "$W/bg-$name/log" 2>&1 < /dev/null &
    echo $! > "$W/bg-$name.pid"
}
SOAK_S=540 bg soak soak:p
CALL_BUDGET=$(left) $G direct:u:u30:18080 launch:q:p110:speed:18083 launch:pq:p30:quality:18084 \
    launch:pf:p30:fp16:18085 >> "$L" 2>&1
CALL_BUDGET=$(left) $G wait:u >> "$L" 2>&1 && LOST_REQUESTS=320 bg lost lost:u,p
CALL_BUDGET=$(left) $G wait:q steps:q smoke:q >> "$L" 2>&1
CALL_BUDGET=$(left) $G wait:pq,pf smoke:pq smoke:pf >> "$L" 2>&1
nvidia-smi >> "$L" 2>&1
grep "gpu_proof +" "$L" | tail -8
