#!/usr/bin/env bash
# Device call 6 (issue 11, after the review mends: every graph checked at capture, each part captured on
# its own, the encoder's replay kept out of TorchScript): the decode bench on both pins (eager and
# graph-all), then p (30bc57b) through launch_a10.sh the way an A10 user starts it: 24 GiB free
# (gpu-budget.py 24), SIZE=24g, memory check on; smoke, c=1, memory report, server log, bundle.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-560}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; W=/tmp/lt-bench; L="$OUT/call6.log"
CALL_BUDGET=$(left) $G setup > "$L" 2>&1 || { tail -20 "$L"; exit 1; }
export DECODE_STEPS=5 DECODE_PRECISIONS=fp16 DECODE_REPS=3 DECODE_STREAM_REPS=2 DECODE_PARTS_REPS=1
CALL_BUDGET=$(left) $G decode >> "$L" 2>&1; mv "$OUT/decode.json" "$OUT/decode-p30.json" 2>/dev/null
PATCHED=$W/ck/p110 CALL_BUDGET=$(left) $G decode >> "$L" 2>&1; mv "$OUT/decode.json" "$OUT/decode-p110.json" 2>/dev/null
export LAUNCH_ENV="SIZE=24g"
CALL_BUDGET=$(left) $G budget:24 memwatch:10 launch:p:p30:speed:18081 wait:p smoke:p c1:p memreport report >> "$L" 2>&1
CALL_BUDGET=$(left) $G bundle >> "$L" 2>&1
grep "gpu_proof +\|PROBLEM" "$L" | tail -25
