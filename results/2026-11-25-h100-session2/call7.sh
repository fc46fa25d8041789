#!/usr/bin/env bash
# Device call 7, fresh machine: the quality and fp16 profiles of patched 30bc57b through launch_a10.sh
# (memory check on, as a user runs it), both inside ONE 24 GiB budget, smoke requests, memory.
set -u
export LAUNCH_ENV="SIZE=24g"
CALL_BUDGET=${TOTAL:-285} bash bench/gpu_proof.sh setup budget:24 memwatch:5 launch:pq:p30:quality:18084 \
    launch:pf:p30:fp16:18085 wait:pq,pf smoke:pq smoke:pf memreport report bundle > "$OUT/call7.log" 2>&1
grep "gpu_proof +\|left free" "$OUT/call7.log" | tail -14
