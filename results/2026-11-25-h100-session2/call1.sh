#!/usr/bin/env bash
# Device call 1 (issue 11, served; issue 9, two servers in one A10's memory): the patched 30bc57b tree
# started twice by launch_a10.sh (24g sizes) under ONE 24 GiB budget: p = graphed flow (the default),
# e = the same with --flow_cuda_graph false (today's patched server). Then c=1 TTFA/RTF and the ladder.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-560}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"
export LAUNCH_ENV="SIZE=24g"
CALL_BUDGET=$(left) $G setup budget:24 memwatch:10 launch:p:p30:speed:18081 > "$OUT/call1.log" 2>&1 || exit 1
# e starts a moment after p: MEM_CHECK=off so its preflight does not race p's first allocations
LAUNCH_ENV="SIZE=24g MEM_CHECK=off" LAUNCH_ARGS="--flow_cuda_graph false" CALL_BUDGET=$(left) \
    $G launch:e:p30:speed:18082 >> "$OUT/call1.log" 2>&1 || exit 1
LADDER_CELLS=stream:2:1,stream:3:1,stream:4:1,stream:6:1,stream:8:1 LADDER_ROUNDS=1 CALL_BUDGET=$(left) \
    $G wait:p,e c1:e,p ladder:e,p >> "$OUT/call1.log" 2>&1
nvidia-smi >> "$OUT/call1.log" 2>&1
tail -5 "$OUT/call1.log"
