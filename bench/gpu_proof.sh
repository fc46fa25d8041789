#!/usr/bin/env bash
# Phases are called indirectly ("phase_$name"), which shellcheck cannot follow:
# shellcheck disable=SC2317
# GPU proof for issue 4: the patched LightTTS server runs, measured side by side with the unpatched one.
#
#   bash bench/gpu_proof.sh PHASE...      (run from this repository's root on the GPU machine)
#
# Phases, run in the order given; each one is idempotent, so a call on a machine that is still warm
# skips what is done and a call on a fresh machine redoes it:
#   setup    install the carried wheels (.whl/) into $SITE; build the random model dir (once)
#   start    start the base server ($BASE, below) and the patched one at the same time on one GPU
#            (setsid, so they outlive this command while the machine stays warm), wait for /liveness
#   load_a   interleaved load: nonstream c=1,4,16 and stream c=1,4 (rounds until the call's budget,
#            less RESERVE_FOR_B seconds)
#   load_b   interleaved load: stream c=16
#   load_dtype  interleaved load for BASE=patched-fp16: nonstream c=1,4,16
#   report   probe summary + server logs + GPU memory into $OUT (servers keep running)
#   stop     stop both servers (their process groups), then report
#   decode   decode-stage micro-benchmark (servers must be stopped: it wants the GPU to itself)
#
# Inputs (git-ignored, carried to the device): .whl/ (wheels), .up/unpatched and .up/patched (LightTTS
# 30bc57b copies without .git, the second one after apply_patches.py). See docs/PERFORMANCE.md.
# Nothing here downloads anything or edits upstream files.
#
# Environment: OUT (results; the device tool sets it), CALL_BUDGET (seconds this call may use, default
# 540), WORK (default /tmp/lt-bench), SITE (default /tmp/site), BASE (unpatched or patched-fp16).
# Send the output to a file, not a pipe: `bash bench/gpu_proof.sh setup start > $OUT/log 2>&1`.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s)
CALL_BUDGET=${CALL_BUDGET:-540}
WORK=${WORK:-/tmp/lt-bench}
SITE=${SITE:-/tmp/site}
OUT=${OUT:-$WORK/out}
UNPATCHED=${UNPATCHED:-$REPO/.up/unpatched}
PATCHED=${PATCHED:-$REPO/.up/patched}
MODEL=$WORK/model
PROBE=$WORK/probe
LOGS=$WORK/logs
U_PORT=18080
P_PORT=18081
U_URL=http://127.0.0.1:$U_PORT
P_URL=http://127.0.0.1:$P_PORT
# Same server arguments for both, except what the patches add. --load_trt '' is the only way to say
# false on unpatched 30bc57b (type=bool); the patched parser takes false.
COMMON_ARGS=(--host 127.0.0.1 --max_total_token_num 16384 --max_req_total_len 4096)
U_ARGS=(--load_trt '')
# BASE picks what the patched server is measured against:
#   unpatched     (default) the pin as upstream ships it: fp16 LLM, 10 flow steps
#   patched-fp16  the patched checkout with --data_type float16, so the pair differs only in the LLM dtype
BASE=${BASE:-unpatched}
case $BASE in
    unpatched) BASE_CHECKOUT=$UNPATCHED ;;
    patched-fp16) BASE_CHECKOUT=$PATCHED; U_ARGS=(--load_trt false --flow_steps 5 --data_type float16) ;;
    *) echo "BASE must be unpatched or patched-fp16, not $BASE" >&2; exit 2 ;;
esac
P_ARGS=(--load_trt false --flow_steps 5 --data_type bfloat16)
# Two texts of 10 bytes each: 10 text tokens with the builder's byte-level tokenizer, so 200 speech
# tokens (the cap: 20 per text token) = 8.0 s of audio, for both servers alike. A random LLM samples EOS
# now and then (about 1 request in 40 ends early); RTF divides by each request's own audio length.
TEXTS=(--text "Hi friend." --text "Good luck.")

mkdir -p "$WORK" "$OUT" "$PROBE" "$LOGS"
export PYTHONPATH=$REPO/bench/stubs:$SITE PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1

say() { echo "[gpu_proof +$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( CALL_BUDGET - ($(date +%s) - T0) )); }

phase_setup() {
    if [ ! -f "$SITE/.installed" ]; then
        local wheels=() unpack=() w
        for w in "$REPO"/.whl/*.whl; do
            # atomics 1.0.3 is tagged py36-py311 but works on 3.12: unpack it instead of asking pip.
            case $w in */atomics-*) unpack+=("$w") ;; *) wheels+=("$w") ;; esac
        done
        say "installing ${#wheels[@]}+${#unpack[@]} wheels into $SITE"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "${wheels[@]}" || return 1
        for w in "${unpack[@]}"; do python3 -m zipfile -e "$w" "$SITE" || return 1; done
        touch "$SITE/.installed"
    fi
    if [ ! -f "$MODEL/BUILD_INFO.json" ]; then
        say "building the random-weight model dir"
        python3 "$REPO/bench/build_model_dir.py" "$UNPATCHED" "$MODEL" 2>&1 | tee "$LOGS/build_model_dir.log" | grep -v Warning
        [ -f "$MODEL/BUILD_INFO.json" ] || { say "model dir build failed"; return 1; }
    fi
    {
        echo "date: $(date -u +%FT%TZ)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        python3 -c 'import sys, torch, triton, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__, "transformers", transformers.__version__)'
        nproc
        cat "$REPO/.up/INFO" 2>/dev/null
    } > "$WORK/env.txt" 2>&1
}

alive() { [ -f "$WORK/$1.pid" ] && kill -0 "$(cat "$WORK/$1.pid")" 2>/dev/null; }

# Every name a server may have been started under (any BASE), so stop finds them all.
ALL_SERVERS=(unpatched patched-fp16 patched)

gpu_apps() { nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; }

live() { python3 "$REPO/bench/tts_load.py" wait --server "x=$1" --timeout 1 >/dev/null 2>&1; }

start_one() {  # name checkout port args...
    local name=$1 checkout=$2 port=$3; shift 3
    if alive "$name" && live "http://127.0.0.1:$port"; then say "$name already up"; return 0; fi
    say "starting $name on port $port: $*"
    # exec: the background subshell becomes the server itself (setsid makes it the leader of a new
    # session and process group), so the pid file names the group that phase_stop kills, and no wrapper
    # process is left holding this script's stdout.
    (cd "$checkout" && export LIGHTTTS_BENCH_TAG="$name" LIGHTTTS_BENCH_PROBE_DIR="$PROBE" &&
        exec setsid python3 -m light_tts.server.api_server --model_dir "$MODEL" --port "$port" \
        "${COMMON_ARGS[@]}" "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null) &
    echo $! > "$WORK/$name.pid"
}

phase_start() {
    start_one "$BASE" "$BASE_CHECKOUT" "$U_PORT" "${U_ARGS[@]}"
    start_one patched "$PATCHED" "$P_PORT" "${P_ARGS[@]}"
    local t=0 n
    while ! { live "$U_URL" && live "$P_URL"; }; do
        for n in "$BASE" patched; do
            if ! alive "$n"; then say "$n died during start-up; log tail:"; tail -40 "$LOGS/$n.log"; return 1; fi
        done
        if [ "$t" -ge 420 ]; then say "servers not live after ${t}s"; tail -20 "$LOGS"/*.log; return 1; fi
        sleep 5; t=$((t + 5))
    done
    say "both servers live (waited ${t}s)"
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader > "$WORK/gpu_mem_after_start.txt"
    gpu_apps >> "$WORK/gpu_mem_after_start.txt"
    cat "$WORK/gpu_mem_after_start.txt"
}

run_load() {  # name cells rounds min-seconds reserve-seconds
    local name=$1 cells=$2 rounds=$3 need=$4 reserve=${5:-0}
    local budget=$(( $(left) - 45 - reserve ))
    if [ "$budget" -lt "$need" ]; then say "skipping $name: ${budget}s left, needs ${need}s"; return 0; fi
    local n=1; while [ -f "$OUT/load_${name}_$n.json" ] || [ -f "$WORK/load_${name}_$n.json" ]; do n=$((n + 1)); done
    say "load $name part $n: cells $cells, up to $rounds rounds, deadline ${budget}s"
    # Timeouts bound the damage of a request that never gets its answer (see docs/PERFORMANCE.md).
    python3 "$REPO/bench/tts_load.py" run --server "$BASE=$U_URL" --server "patched=$P_URL" "${TEXTS[@]}" \
        --cells "$cells" --rounds "$rounds" --warmup 1 --timeout 240 --timeout-nonstream 60 \
        --deadline "$budget" --out "$WORK/load_${name}_$n.json" --md "$WORK/load_${name}_$n.md"
    cp "$WORK/load_${name}_$n.json" "$OUT/" 2>/dev/null
}

# MODE:CONCURRENCY:REQUESTS-PER-WORKER per batch. RESERVE_FOR_B keeps time for load_b in the same call.
phase_load_a() {
    run_load a "nonstream:1:4,nonstream:4:1,nonstream:16:1,stream:1:3,stream:4:1" 20 120 "${RESERVE_FOR_B:-0}"
}
phase_load_b() { run_load b "stream:16:1" 3 200; }
# LLM dtype pair (BASE=patched-fp16): non-streaming only, where the LLM's share of the time is largest.
phase_load_dtype() { run_load dtype "nonstream:1:4,nonstream:4:1,nonstream:16:2" 20 120; }

phase_report() {
    python3 "$REPO/bench/probe_report.py" "$PROBE" --base "$BASE" --new patched --json "$OUT/probe.json" \
        > "$WORK/probe.md" 2>&1
    cat "$WORK/probe.md"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader > "$WORK/gpu_mem_now.txt" 2>&1
    local extra=() f
    for f in "$WORK"/gpu_mem_*.txt "$WORK"/load_*.md "$WORK"/probe.md; do [ -f "$f" ] && extra+=("${f##*/}"); done
    tar -C "$WORK" -czf "$OUT/logs.tar.gz" logs probe env.txt "${extra[@]}"
    ls -la "$OUT"
}

phase_stop() {
    local n pid
    for n in "${ALL_SERVERS[@]}"; do
        if alive "$n"; then
            pid=$(cat "$WORK/$n.pid")
            say "stopping $n (process group $pid)"
            kill -TERM -- "-$pid" 2>/dev/null
        fi
    done
    sleep 8
    # The group leader may exit on SIGTERM while LightTTS's spawned model processes linger in its
    # process group: kill the whole group whether or not the leader is still there.
    for n in "${ALL_SERVERS[@]}"; do
        if [ -f "$WORK/$n.pid" ]; then kill -KILL -- "-$(cat "$WORK/$n.pid")" 2>/dev/null; fi
        rm -f "$WORK/$n.pid"
    done
    # gunicorn and spawned children are in the same session; make sure nothing holds the GPU
    sleep 2
    local left_on_gpu
    left_on_gpu=$(gpu_apps)
    if [ -n "$left_on_gpu" ]; then say "still on the GPU after stop:"; echo "$left_on_gpu"; fi
    phase_report
}

phase_decode() {
    local in_use n
    in_use=$(gpu_apps)
    for n in "${ALL_SERVERS[@]}"; do alive "$n" && in_use+=" server $n (pid $(cat "$WORK/$n.pid"))"; done
    if [ -n "$in_use" ]; then
        say "decode: the GPU is in use (stop the servers first):"; echo "$in_use"
        return 1
    fi
    phase_setup || return 1
    local reps=${DECODE_REPS:-12} sreps=${DECODE_STREAM_REPS:-3}
    say "decode bench on the patched checkout (${reps} non-stream, ${sreps} stream repetitions per config)"
    python3 "$REPO/bench/decode_bench.py" "$PATCHED" "$MODEL" --steps 10,8,5,3 --precisions fp16,bf16 \
        --modes nonstream,stream --tokens 250 --reps "$reps" --stream-reps "$sreps" --stream-warmup 1 \
        --out "$OUT/decode.json" \
        2>&1 | grep -v -i warning
}

status=0
for ph in "$@"; do
    if ! declare -F "phase_$ph" >/dev/null; then echo "unknown phase: $ph" >&2; exit 2; fi
    say "== $ph ($(left)s left in this call)"
    "phase_$ph" || { status=1; say "phase $ph failed"; [ "$ph" = setup ] || [ "$ph" = start ] && break; }
done
say "done, status $status"
exit $status
