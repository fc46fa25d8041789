#!/usr/bin/env bash
# Device call 3 (issue 11 and issue 9's budget): the same pair inside ONE 24 GiB budget, as in the second
# 2026-11-25 session but with this patch set (estimator, encoder and HiFT graphs): budget:24, then p
# (graphed, the default) and e (--flow_cuda_graph false) through launch_a10.sh (SIZE=24g) at the same
# moment, c=1 TTFA/RTF interleaved, the ladders (e 3..5, p 12..24), memory report, bundle.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-570}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; L="$OUT/call3.log"
export LAUNCH_ENV="SIZE=24g"
CALL_BUDGET=$(left) $G stop setup budget:24 memwatch:10 launch:p:p30:speed:18081 > "$L" 2>&1 || { tail -20 "$L"; exit 1; }
LAUNCH_ENV="SIZE=24g MEM_CHECK=off" LAUNCH_ARGS="--flow_cuda_graph false" CALL_BUDGET=$(left) \
    $G launch:e:p30:speed:18082 >> "$L" 2>&1 || { tail -20 "$L"; exit 1; }
CALL_BUDGET=$(left) $G wait:p,e c1:e,p >> "$L" 2>&1
LADDER_CELLS=stream:3:1,stream:4:1,stream:5:1 LADDER_ROUNDS=1 CALL_BUDGET=$(left) $G ladder:e >> "$L" 2>&1
mv "$OUT/load_ladder.json" "$OUT/load_ladder_e.json" 2>/dev/null
LADDER_CELLS=stream:12:1,stream:16:1,stream:20:1,stream:24:1 LADDER_ROUNDS=1 CALL_BUDGET=$(left) $G ladder:p >> "$L" 2>&1
mv "$OUT/load_ladder.json" "$OUT/load_ladder_p.json" 2>/dev/null
CALL_BUDGET=$(left) $G memreport report >> "$L" 2>&1
nvidia-smi >> "$L" 2>&1
CALL_BUDGET=$(left) $G bundle >> "$L" 2>&1
grep "gpu_proof +\|PROBLEM\|live" "$L" | tail -25
