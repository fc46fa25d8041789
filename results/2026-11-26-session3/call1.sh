#!/usr/bin/env bash
# Device call 1 (issue 11, part 3): setup, then the decode bench on a quiet GPU with three flows, eager,
# graph (the estimator's CUDA graphs only: the previous patch set) and graph-all (also the flow encoder's
# and HiFT's: what --flow_cuda_graph true now captures), on 30bc57b, then on ad1c76e. 5 steps, fp16.
set -u
T0=$(date +%s); TOTAL=${TOTAL:-540}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; W=/tmp/lt-bench
L="$OUT/call1.log"
CALL_BUDGET=$(left) $G setup > "$L" 2>&1 || { tail -20 "$L"; exit 1; }
export DECODE_STEPS=5 DECODE_PRECISIONS=fp16 DECODE_REPS=5 DECODE_STREAM_REPS=3 DECODE_PARTS_REPS=2
CALL_BUDGET=$(left) $G decode >> "$L" 2>&1; mv "$OUT/decode.json" "$OUT/decode-p30.json" 2>/dev/null
[ "$(left)" -gt 150 ] && { DECODE_STREAM_REPS=2 DECODE_PARTS_REPS=1 PATCHED=$W/ck/p110 CALL_BUDGET=$(left) $G decode >> "$L" 2>&1;
    mv "$OUT/decode.json" "$OUT/decode-p110.json" 2>/dev/null; }
nvidia-smi --query-gpu=name,memory.total --format=csv >> "$L" 2>&1
grep "gpu_proof +\|model ready\|PROBLEM" "$L" | tail -12
