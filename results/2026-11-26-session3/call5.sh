#!/usr/bin/env bash
# Device call 5 (issue 11), H100, whole card: the ladder's borderline cells again with 2 rounds each
# (call 4 had one round: graphed 0.99 at 20 streams, eager 0.97 at 4), and ad1c76e served with this patch
# set: p (30bc57b graphed), e (30bc57b --flow_cuda_graph false) and q (ad1c76e graphed) through
# launch_a10.sh (24g sizes) at the same moment; smoke on q; ladders; memory report, server logs, bundle.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-570}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; L="$OUT/call5.log"
export LAUNCH_ENV="SIZE=24g"
echo "p and e: still running from call 4 (the machine stayed warm)" > "$L"
LAUNCH_ENV="SIZE=24g MEM_CHECK=off" CALL_BUDGET=$(left) $G launch:q:p110:speed:18083 >> "$L" 2>&1
CALL_BUDGET=$(left) $G wait:p,e,q smoke:q >> "$L" 2>&1
LADDER_CELLS=stream:3:1,stream:4:1,stream:5:1 LADDER_ROUNDS=2 CALL_BUDGET=$(left) $G ladder:e >> "$L" 2>&1
mv "$OUT/load_ladder.json" "$OUT/load_ladder_e.json" 2>/dev/null
LADDER_CELLS=stream:16:1,stream:20:1,stream:22:1 LADDER_ROUNDS=2 CALL_BUDGET=$(left) $G ladder:p >> "$L" 2>&1
mv "$OUT/load_ladder.json" "$OUT/load_ladder_p.json" 2>/dev/null
CALL_BUDGET=$(left) $G memreport report >> "$L" 2>&1; nvidia-smi >> "$L" 2>&1
CALL_BUDGET=$(left) $G bundle >> "$L" 2>&1
grep "gpu_proof +\|PROBLEM" "$L" | tail -25
