#!/usr/bin/env bash
# Device call 2 (issue 11): the decode bench again on 30bc57b (fixed replay expectation, eager-again
# row), then the served comparison on the WHOLE card (no budget): the patched 30bc57b tree started twice
# by launch_a10.sh (24g sizes, as an A10 user runs it): p = graphed (the default: estimator, encoder and
# HiFT graphs), e = the same with --flow_cuda_graph false. c=1 TTFA/RTF interleaved, then the ladder of
# 8-second streams: e at 3..6, p at 8..24. Servers keep running for call 3.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-570}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; L="$OUT/call2.log"
CALL_BUDGET=$(left) $G setup > "$L" 2>&1 || { tail -20 "$L"; exit 1; }
DECODE_STEPS=5 DECODE_PRECISIONS=fp16 DECODE_REPS=3 DECODE_STREAM_REPS=2 DECODE_PARTS_REPS=1 CALL_BUDGET=$(left) \
    $G decode >> "$L" 2>&1; mv "$OUT/decode.json" "$OUT/decode-p30.json" 2>/dev/null
export LAUNCH_ENV="SIZE=24g"
CALL_BUDGET=$(left) $G memwatch:10 launch:p:p30:speed:18081 >> "$L" 2>&1 || { tail -20 "$L"; exit 1; }
LAUNCH_ENV="SIZE=24g MEM_CHECK=off" LAUNCH_ARGS="--flow_cuda_graph false" CALL_BUDGET=$(left) \
    $G launch:e:p30:speed:18082 >> "$L" 2>&1 || { tail -20 "$L"; exit 1; }
CALL_BUDGET=$(left) $G wait:p,e c1:e,p >> "$L" 2>&1
LADDER_CELLS=stream:3:1,stream:4:1,stream:5:1,stream:6:1 LADDER_ROUNDS=1 CALL_BUDGET=$(left) $G ladder:e >> "$L" 2>&1
mv "$OUT/load_ladder.json" "$OUT/load_ladder_e.json" 2>/dev/null
LADDER_CELLS=stream:8:1,stream:12:1,stream:16:1,stream:18:1,stream:20:1,stream:24:1 LADDER_ROUNDS=1 CALL_BUDGET=$(left) \
    $G ladder:p >> "$L" 2>&1
mv "$OUT/load_ladder.json" "$OUT/load_ladder_p.json" 2>/dev/null
nvidia-smi >> "$L" 2>&1
CALL_BUDGET=$(left) $G bundle >> "$L" 2>&1
grep "gpu_proof +\|PROBLEM\|live after" "$L" | tail -25
