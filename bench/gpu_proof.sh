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
# Phases for serving the way a user does (issue 9 on): arguments follow the phase name, colon-separated.
#   budget:GIB           hold all of the GPU's free memory but GIB (../shared/gpu-budget.py, carried in .up/);
#                        a second budget:GIB holds more, so budget:48 then budget:24 leaves 24 for a while
#   unbudget             release the most recent holder
#   launch:NAME:CK:PROFILE:PORT  start checkout CK (u30, p30, p110) through launch_a10.sh --profile PROFILE,
#                        LOAD_TRT=false, as a user would (extra launcher variables in LAUNCH_ENV="A=1 B=2",
#                        extra server flags after -- in LAUNCH_ARGS)
#   direct:NAME:CK:PORT  start CK with python -m light_tts.server.api_server and the sizes launch_a10.sh
#                        --dry-run prints for p30 (for the unpatched pin: same sizes, --load_trt '')
#   wait:NAME,...        wait until each server answers /liveness (a server that dies fails the phase)
#   memwatch:SECONDS     sample GPU memory per process and host RSS per server every SECONDS (mem.csv)
#   smoke:NAME           zero-shot requests, streaming and not
#   steps:NAME           per-request flow_steps 3, 5 and 10 interleaved, and invalid values (HTTP 400)
#   lost:NAME,...        non-streaming concurrency 16, LOST_REQUESTS (320) requests per server, interleaved
#   c1:NAME,...          streaming and non-streaming at concurrency 1, interleaved (TTFA and RTF, C1_ROUNDS)
#   ladder:NAME,...      streaming at concurrency 1..16 (LADDER_CELLS), to find where RTF p50 passes 1
#   soak:NAME            mixed streaming / non-streaming load at concurrency 8 for up to SOAK_S (540) seconds
#   stopone:NAME         stop one server
#   bundle               pack $OUT into $OUT/bundle.tar.gz when it holds more than 8 files (the device tool
#                        returns at most 8 a call and silently leaves the rest out); a call's last phase
#
# Inputs (git-ignored, carried to the device): .whl/ (wheels) and .up/: either repos.tar, make-checkout.sh
# and gpu-budget.py copied from ../shared (setup then builds real git checkouts u30 = 30bc57b, p30 =
# 30bc57b patched, p110 = ad1c76e patched, so launch_a10.sh's --status preflight works), or the older
# .up/unpatched and .up/patched copies. See docs/PERFORMANCE.md.
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
CK=$WORK/ck
if [ -f "$REPO/.up/repos.tar" ]; then
    UNPATCHED=${UNPATCHED:-$CK/u30}
    PATCHED=${PATCHED:-$CK/p30}
else
    UNPATCHED=${UNPATCHED:-$REPO/.up/unpatched}
    PATCHED=${PATCHED:-$REPO/.up/patched}
fi
MODEL=$WORK/model
PROBE=$WORK/probe
LOGS=$WORK/logs
U_PORT=18080
P_PORT=18081
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
LOAD_TEXTS=("${TEXTS[@]}")

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
    if [ -f "$REPO/.up/repos.tar" ] && [ ! -f "$CK/.built" ]; then
        say "building checkouts from .up/repos.tar and applying the overlay"
        rm -rf "$CK" && mkdir -p "$CK"
        local make="bash $REPO/.up/make-checkout.sh"
        $make "$CK/u30" 30bc57b && $make "$CK/p30" 30bc57b && $make "$CK/p110" ad1c76e || return 1
        python3 "$REPO/apply_patches.py" "$CK/p30" && python3 "$REPO/apply_patches.py" "$CK/p110" || return 1
        touch "$CK/.built"
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
        cat "$REPO/.up/INFO" 2>/dev/null || true
    } > "$WORK/env.txt" 2>&1
}

alive() { [ -f "$WORK/$1.pid" ] && kill -0 "$(cat "$WORK/$1.pid")" 2>/dev/null; }
url_of() { echo "http://127.0.0.1:$(cat "$WORK/$1.port")"; }

# Every server this machine has started (spawn_server writes NAME.port), so stop finds them all.
all_servers() {  # read when needed: a phase earlier in the same call may have started more
    local f
    for f in "$WORK"/*.port; do [ -f "$f" ] && f=${f##*/} && echo "${f%.port}"; done
}

gpu_apps() { nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; }

live() { python3 "$REPO/bench/tts_load.py" wait --server "x=$1" --timeout 1 >/dev/null 2>&1; }

spawn_server() {  # NAME DIR PORT COMMAND...: run COMMAND in DIR as server NAME, in the background
    local name=$1 dir=$2 port=$3; shift 3
    echo "$port" > "$WORK/$name.port"
    # exec: the background subshell becomes the server itself (setsid makes it the leader of a new
    # session and process group), so the pid file names the group that stop kills, and no wrapper
    # process is left holding this script's stdout.
    (cd "$dir" && exec env LIGHTTTS_BENCH_TAG="$name" LIGHTTTS_BENCH_PROBE_DIR="$PROBE" "$@" \
        >> "$LOGS/$name.log" 2>&1 < /dev/null) &
    echo $! > "$WORK/$name.pid"
    mark "launch $name pgid $(cat "$WORK/$name.pid")"
}

start_one() {  # name checkout port args...
    local name=$1 checkout=$2 port=$3; shift 3
    if alive "$name" && live "http://127.0.0.1:$port"; then say "$name already up"; return 0; fi
    say "starting $name on port $port: $*"
    spawn_server "$name" "$checkout" "$port" setsid python3 -m light_tts.server.api_server --model_dir "$MODEL" \
        --port "$port" "${COMMON_ARGS[@]}" "$@"
}

phase_start() {
    start_one "$BASE" "$BASE_CHECKOUT" "$U_PORT" "${U_ARGS[@]}"
    start_one patched "$PATCHED" "$P_PORT" "${P_ARGS[@]}"
    wait_live "$BASE" patched || { tail -20 "$LOGS"/*.log; return 1; }
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader > "$WORK/gpu_mem_after_start.txt"
    gpu_apps >> "$WORK/gpu_mem_after_start.txt"
    cat "$WORK/gpu_mem_after_start.txt"
}

run_load() {  # name cells rounds min-seconds reserve-seconds
    local name=$1 cells=$2 rounds=$3 need=$4 reserve=${5:-0}
    local budget=$(( $(left) - 45 - reserve ))
    if [ "$budget" -lt "$need" ]; then say "skipping $name: ${budget}s left, needs ${need}s"; return 0; fi
    local n=1; while [ -f "$OUT/load_${name}_$n.json" ] || [ -f "$WORK/load_${name}_$n.md" ]; do n=$((n + 1)); done
    DEADLINE=$budget NONSTREAM_TIMEOUT=60 load_run "${name}_$n" "$BASE,patched" "$cells" "$rounds"
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

stop_servers() {  # NAME...: SIGTERM each server's process group, then SIGKILL what is left of it
    local n pid
    for n in "$@"; do
        [ -f "$WORK/$n.pid" ] || continue
        pid=$(cat "$WORK/$n.pid")
        say "stopping $n (process group $pid)"; mark "stop $n"
        kill -TERM -- "-$pid" 2>/dev/null
    done
    sleep 8
    # The group leader may exit on SIGTERM while LightTTS's spawned model processes linger in its
    # process group: kill the whole group whether or not the leader is still there.
    for n in "$@"; do
        if [ -f "$WORK/$n.pid" ]; then kill -KILL -- "-$(cat "$WORK/$n.pid")" 2>/dev/null; fi
        rm -f "$WORK/$n.pid"
    done
    sleep 2  # gunicorn and spawned children are in the same session; let the GPU go
}

phase_stop() {
    local servers; mapfile -t servers < <(all_servers)
    stop_servers "${servers[@]}"
    local left_on_gpu
    left_on_gpu=$(gpu_apps)
    if [ -n "$left_on_gpu" ]; then say "still on the GPU after stop:"; echo "$left_on_gpu"; fi
    phase_report
}

phase_decode() {
    local in_use n
    in_use=$(gpu_apps)
    for n in $(all_servers); do alive "$n" && in_use+=" server $n (pid $(cat "$WORK/$n.pid"))"; done
    if [ -n "$in_use" ]; then
        say "decode: the GPU is in use (stop the servers first):"; echo "$in_use"
        return 1
    fi
    phase_setup || return 1
    local reps=${DECODE_REPS:-12} sreps=${DECODE_STREAM_REPS:-3}
    # DECODE_STEPS / DECODE_PRECISIONS narrow the grid when a call has little time (eager and graphed,
    # exactness and per-part timings are always in it)
    say "decode bench on the patched checkout (${reps} non-stream, ${sreps} stream repetitions per config)"
    python3 "$REPO/bench/decode_bench.py" "$PATCHED" "$MODEL" --steps "${DECODE_STEPS:-10,8,5,3}" \
        --precisions "${DECODE_PRECISIONS:-fp16,bf16}" --modes nonstream,stream --tokens 250 --reps "$reps" \
        --stream-reps "$sreps" --stream-warmup 1 --parts-reps "${DECODE_PARTS_REPS:-3}" \
        --out "$OUT/decode.json" 2>&1 | grep -v -i warning
}

# --------------------------------------------------------------------------- serving as a user does

checkout_of() {  # u30 | p30 | p110 -> path
    case $1 in
        u30) echo "$CK/u30" ;; p30) echo "$CK/p30" ;; p110) echo "$CK/p110" ;;
        *) echo "unknown checkout '$1' (u30, p30 or p110)" >&2; return 1 ;;
    esac
}

mark() { echo "$(date +%s) $*" >> "$WORK/events.log"; }  # timestamps the memory report lines up with

phase_budget() {  # GIB
    local gib=${1:?budget needs GIB}; local n=1
    while [ -f "$WORK/budget-$n.pid" ]; do n=$((n + 1)); done
    setsid python3 "$REPO/.up/gpu-budget.py" "$gib" --hold 3000 > "$LOGS/budget-$n.log" 2>&1 < /dev/null &
    echo $! > "$WORK/budget-$n.pid"
    local t=0
    until grep -q "left free" "$LOGS/budget-$n.log" 2>/dev/null; do
        if ! kill -0 "$(cat "$WORK/budget-$n.pid")" 2>/dev/null || [ "$t" -ge 60 ]; then
            say "budget holder failed:"; cat "$LOGS/budget-$n.log"; rm -f "$WORK/budget-$n.pid"; return 1
        fi
        sleep 1; t=$((t + 1))
    done
    cat "$LOGS/budget-$n.log"; mark "budget $gib"
}

phase_unbudget() {
    local n=1
    while [ -f "$WORK/budget-$((n + 1)).pid" ]; do n=$((n + 1)); done
    [ -f "$WORK/budget-$n.pid" ] || { say "no budget holder"; return 0; }
    kill -- "-$(cat "$WORK/budget-$n.pid")" 2>/dev/null; rm -f "$WORK/budget-$n.pid"
    sleep 2; mark "unbudget $n"; nvidia-smi --query-gpu=memory.used,memory.free --format=csv,noheader
}

wait_live() {  # NAME... : each server answers /liveness; a dead one fails at once
    local t0=$SECONDS t=0 n pending
    while :; do
        pending=()
        for n in "$@"; do
            live "$(url_of "$n")" || pending+=("$n")
        done
        [ ${#pending[@]} -eq 0 ] && break
        for n in "${pending[@]}"; do
            if ! alive "$n"; then say "$n died during start-up; log tail:"; tail -40 "$LOGS/$n.log"; return 1; fi
        done
        t=$((SECONDS - t0))  # wall time: each liveness probe takes time too
        if [ "$t" -ge "${START_TIMEOUT:-420}" ]; then say "not live after ${t}s: ${pending[*]}"; return 1; fi
        sleep 3
    done
    t=$((SECONDS - t0))
    for n in "$@"; do mark "live $n"; done
    say "live: $* (waited ${t}s)"; gpu_apps
}

phase_wait() { local targets; IFS=, read -ra targets <<< "${1:?wait needs NAME,...}"; wait_live "${targets[@]}"; }

name_free() {  # a name identifies one server's logs, probe and memory: never two live ones
    if alive "$1"; then say "a server named $1 is still running: stopone:$1 first, or pick another name"; return 1; fi
}

phase_launch() {  # NAME CK PROFILE PORT
    local name=${1:?} ck profile=${3:?} port=${4:?}
    name_free "$name" || return 1
    ck=$(checkout_of "${2:?}") || return 1
    say "launching $name: LIGHTTTS_DIR=$ck launch_a10.sh --profile $profile (PORT=$port LOAD_TRT=false ${LAUNCH_ENV:-})"
    # shellcheck disable=SC2086 # LAUNCH_ENV / LAUNCH_ARGS are lists of words
    spawn_server "$name" "$REPO" "$port" LIGHTTTS_DIR="$ck" MODEL_DIR="$MODEL" LOAD_TRT=false HOST=127.0.0.1 \
        PORT="$port" ${LAUNCH_ENV:-} setsid bash "$REPO/launch_a10.sh" --profile "$profile" ${LAUNCH_ARGS:+-- $LAUNCH_ARGS}
}

phase_direct() {  # NAME CK PORT: the sizes launch_a10.sh would pass, for a server it cannot start
    local name=${1:?} ck port=${3:?} sizes trt=(--load_trt false)
    name_free "$name" || return 1
    ck=$(checkout_of "${2:?}") || return 1
    [ "$2" = u30 ] && trt=(--load_trt '')
    # shellcheck disable=SC2086 # LAUNCH_ENV is a list of VAR=value words
    sizes=$(cd "$REPO" && env LIGHTTTS_DIR="$CK/p30" MODEL_DIR="$MODEL" LOAD_TRT=false PORT=1 ${LAUNCH_ENV:-} \
        bash "$REPO/launch_a10.sh" --dry-run ${LAUNCH_ARGS:+-- $LAUNCH_ARGS} 2>/dev/null | python3 -c '
import shlex, sys
words = shlex.split(sys.stdin.read().strip().splitlines()[-1])
keep = ("--max_total_token_num", "--max_req_total_len", "--batch_max_tokens", "--graph_max_batch_size",
        "--graph_max_len_in_batch", "--running_max_req_size")
print(" ".join(f"{w} {words[i + 1]}" for i, w in enumerate(words) if w in keep))') || return 1
    [ -n "$sizes" ] || { say "could not read the launcher's sizes"; return 1; }
    say "starting $name directly with the launcher's sizes: $sizes ${trt[*]}"
    # shellcheck disable=SC2086 # $sizes is a list of flags
    spawn_server "$name" "$ck" "$port" PYTHONPATH="$ck:$ck/cosyvoice:$ck/third_party/Matcha-TTS:$PYTHONPATH" \
        setsid python3 -m light_tts.server.api_server --model_dir "$MODEL" --host 127.0.0.1 --port "$port" \
        $sizes "${trt[@]}"
}

phase_memwatch() {  # SECONDS: GPU memory of every compute process, host RSS of every process group
    local every=${1:-10}
    [ -f "$WORK/memwatch.pid" ] && kill -0 "$(cat "$WORK/memwatch.pid")" 2>/dev/null && return 0
    # setsid: the sampler outlives this command while the machine stays warm, like the servers
    # shellcheck disable=SC2016 # the loop is expanded by the inner bash
    setsid bash -c 'while :; do
        ts=$(date +%s)
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
            while IFS=", " read -r pid mib; do
                echo "$ts,gpu,$pid,$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d " "),$mib"
            done
        ps -eo pgid=,rss= | awk -v ts="$ts" "{r[\$1] += \$2} END {for (g in r) if (r[g] > 102400) printf \"%s,host,-,%s,%d\\n\", ts, g, r[g] / 1024}"
        sleep "$0"
    done >> "$1"' "$every" "$WORK/mem.csv" < /dev/null > /dev/null 2>&1 &
    echo $! > "$WORK/memwatch.pid"
}


servers_args() {  # NAME,... -> --server NAME=URL ...
    local IFS=, n; for n in $1; do printf -- '--server\n%s=%s\n' "$n" "$(url_of "$n")"; done
}

load_run() {  # LABEL NAMES CELLS ROUNDS [extra tts_load args...]; DEADLINE, NONSTREAM_TIMEOUT override
    local label=$1 on=$2 cells=$3 rounds=$4; shift 4
    # Timeouts bound the damage of a request that never gets its answer (see docs/PERFORMANCE.md).
    local budget=${DEADLINE:-$(( $(left) - 40 ))}
    local srv; mapfile -t srv < <(servers_args "$on")
    say "load $label on $on: cells $cells, up to $rounds rounds, deadline ${budget}s"
    mark "load-start $label"
    python3 "$REPO/bench/tts_load.py" run "${srv[@]}" "${LOAD_TEXTS[@]}" --cells "$cells" --rounds "$rounds" \
        --warmup 1 --timeout 240 --timeout-nonstream "${NONSTREAM_TIMEOUT:-90}" --deadline "$budget" \
        --out "$OUT/load_$label.json" --md "$WORK/load_$label.md" "$@"
    mark "load-end $label"
}

phase_smoke() { load_run "smoke_$1" "$1" "nonstream:1:2,stream:1:2" 1; }

phase_steps() {  # per-request flow_steps (issue 10): 3, 5, 10 interleaved, both modes; then invalid values
    load_run "steps_$1" "$1" "nonstream:1:3,stream:1:3" 2 --flow-steps 3,5,10 || return 1
    python3 "$REPO/bench/tts_load.py" check-invalid --server "$1=$(url_of "$1")" --out "$OUT/invalid_$1.json"
}

phase_lost() {  # NAMES: lost or failed non-streaming responses at concurrency 16
    # Short texts (4 text tokens, ~3 s of audio): many requests a second, as many chances for the race
    # per request as long ones. 30 s is several times the slowest answer seen at c16; a lost response
    # never comes, so a longer wait only costs time.
    local per=$(( ${LOST_REQUESTS:-320} / 16 / 2 ))
    local LOAD_TEXTS=(--text "Yes." --text "Now.") NONSTREAM_TIMEOUT=${NONSTREAM_TIMEOUT:-30}
    load_run "lost" "$1" "nonstream:16:2" "$per"
}

phase_ladder() {  # NAMES: 8-second streams at rising concurrency, servers interleaved (issue 11's ladder)
    load_run "ladder" "$1" "${LADDER_CELLS:-stream:1:2,stream:2:1,stream:4:1,stream:6:1,stream:8:1,stream:12:1,stream:16:1}" \
        "${LADDER_ROUNDS:-2}"
}

phase_c1() {  # NAMES: TTFA and RTF of one request at a time, both modes, servers interleaved (issue 11)
    load_run "c1" "$1" "stream:1:3,nonstream:1:3" "${C1_ROUNDS:-3}"
}

phase_soak() {  # NAME
    # tts_load starts no round that would end after the deadline, so the soak runs up to SOAK_S, at
    # least SOAK_S minus one round (~30 s): the default 540 gives the 8 minutes issue 9 asks for.
    local secs=${SOAK_S:-540}
    if [ "$secs" -gt "$(( $(left) - 40 ))" ]; then
        secs=$(( $(left) - 40 )); say "soak clipped to ${secs}s: the call has no more time"
    fi
    say "soak on $1 for up to ${secs}s"
    mark "soak-start $1"
    python3 "$REPO/bench/tts_load.py" run --server "$1=$(url_of "$1")" "${TEXTS[@]}" --cells "mixed:8:2" \
        --rounds 100000 --warmup 0 --timeout 240 --timeout-nonstream 90 --deadline "$secs" \
        --out "$OUT/soak_$1.json" --md "$WORK/soak_$1.md"
    mark "soak-end $1"
}

phase_stopone() { stop_servers "${1:?}"; }

phase_bundle() {
    local files n
    mapfile -t files < <(cd "$OUT" && find . -type f ! -name bundle.tar.gz | sed 's|^\./||' | sort)
    n=${#files[@]}
    [ "$n" -gt 8 ] || { say "bundle: $n files in $OUT, all come back"; return 0; }
    tar -C "$OUT" -czf "$OUT/bundle.tar.gz" "${files[@]}" && (cd "$OUT" && rm -f "${files[@]}") || return 1
    say "bundle: $n files packed into bundle.tar.gz"
}

phase_memreport() {
    [ -f "$WORK/mem.csv" ] || { say "no mem.csv"; return 0; }
    cp "$WORK/mem.csv" "$WORK/events.log" "$OUT/" 2>/dev/null
    python3 "$REPO/bench/probe_report.py" "$PROBE" --mem "$WORK/mem.csv" --events "$WORK/events.log" \
        --json "$OUT/memory.json" --mem-only
}

status=0
for spec in "$@"; do
    IFS=: read -ra words <<< "$spec"
    ph=${words[0]}
    if ! declare -F "phase_$ph" >/dev/null; then echo "unknown phase: $ph" >&2; exit 2; fi
    say "== $spec ($(left)s left in this call)"
    "phase_$ph" "${words[@]:1}" || {
        status=1; say "phase $spec failed"
        case $ph in setup | start | launch | direct | wait | budget) break ;; esac
    }
done
say "done, status $status"
exit $status
