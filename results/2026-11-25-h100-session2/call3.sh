#!/usr/bin/env bash
# Device call 3, on the machine call 2 left warm: wait for the soak and the lost-response pair, memory
# report, stop every server, then the decode bench on a quiet GPU (30bc57b, then ad1c76e).
set -u
T0=$(date +%s); TOTAL=${TOTAL:-450}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
G="bash bench/gpu_proof.sh"; W=/tmp/lt-bench
L="$OUT/call3.log"
for name in soak lost; do
    while [ -f "$W/bg-$name.pid" ] && kill -0 "$(cat "$W/bg-$name.pid")" 2>/dev/null && [ "$(left)" -gt 200 ]; do
        sleep 5
    done
    echo "bg $name: $(kill -0 "$(cat "$W/bg-$name.pid" 2>/dev/null)" 2>/dev/null && echo "still running" || echo "finished") at +$(( $(date +%s) - T0 ))s" >> "$L"
    mkdir -p "$OUT/bg-$name"; cp -r "$W/bg-$name/." "$OUT/bg-$name/" 2>/dev/null
done
CALL_BUDGET=$(left) $G memreport stop >> "$L" 2>&1
export DECODE_STEPS=5 DECODE_PRECISIONS=fp16 DECODE_REPS=5 DECODE_STREAM_REPS=3 DECODE_PARTS_REPS=1
CALL_BUDGET=$(left) $G decode >> "$L" 2>&1; mv "$OUT/decode.json" "$OUT/decode-p30.json" 2>/dev/null
[ "$(left)" -gt 120 ] && { DECODE_STREAM_REPS=1 PATCHED=$W/ck/p110 CALL_BUDGET=$(left) $G decode >> "$L" 2>&1;
    mv "$OUT/decode.json" "$OUT/decode-p110.json" 2>/dev/null; }
grep "gpu_proof +\|bg " "$L" | tail -12
