#!/usr/bin/env bash
# launch_a10.sh: start a LightTTS checkout patched by apply_patches.py (CosyVoice2-0.5B)
# with settings that upstream's parser and the start-up asserts in api_start.py accept,
# and that fit the GPU's free memory.
#
# Usage: launch_a10.sh [--dry-run] [--profile speed|quality|fp16] [--size auto|16g|24g|80g] [--download]
#                      [-- EXTRA_SERVER_ARGS...]
#   --dry-run     run every check, then print the server command on stdout instead of running it
#   --profile     speed (bf16 LLM, 5 flow steps; default), quality (bf16, 10), fp16 (fp16, 8; GPUs without bf16)
#   --size        server sizes (KV cache, request length, CUDA graphs) for a GPU class: 16g (T4), 24g (A10),
#                 80g (A100/H100 80GB); auto (default): the class of the GPU's total memory
#   --download    fetch iic/CosyVoice2-0.5B into MODEL_DIR with modelscope first
# Environment (explicit values win over the profile and the size): LIGHTTTS_DIR (required), MODEL_DIR, HOST,
#   PORT, FLOW_STEPS, DATA_TYPE, LOAD_TRT, CUDA_VISIBLE_DEVICES, SIZE, MAX_TOTAL_TOKEN_NUM, MAX_REQ_TOTAL_LEN,
#   BATCH_MAX_TOKENS, GRAPH_MAX_BATCH_SIZE, GRAPH_MAX_LEN_IN_BATCH, MEM_CHECK, PYTHON. See docs/launcher.md.
set -euo pipefail

SCRIPT_DIR=$(cd "${BASH_SOURCE[0]%/*}" 2>/dev/null && pwd) || SCRIPT_DIR=$PWD
PY=${PYTHON:-python3}
MODEL_ID=iic/CosyVoice2-0.5B

die() { printf 'launch_a10.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'launch_a10.sh: %s\n' "$*" >&2; }
usage() { # print the header comment (bash only: the launcher needs nothing else from PATH)
  local line
  while IFS= read -r line && [[ $line == '#'* ]]; do
    [[ $line == '#!'* ]] || { line=${line#\#} && printf '%s\n' "${line# }"; }
  done <"${BASH_SOURCE[0]}"
}

# ---- options ---------------------------------------------------------------------------------
dry_run=0 download=0 profile=speed size=${SIZE:-auto} extra=()
while (($#)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --download) download=1 ;;
    --profile) (($# > 1)) || die "--profile needs a value: speed, quality or fp16"; profile=$2; shift ;;
    --profile=*) profile=${1#*=} ;;
    --size) (($# > 1)) || die "--size needs a value: auto, 16g, 24g or 80g"; size=$2; shift ;;
    --size=*) size=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option '$1' (server flags go after '--'; see --help)" ;;
  esac
  shift
done

case $profile in
  speed) p_dtype=bfloat16 p_steps=5 ;;
  quality) p_dtype=bfloat16 p_steps=10 ;;
  fp16) p_dtype=float16 p_steps=8 ;;
  *) die "unknown profile '$profile': use speed, quality or fp16" ;;
esac
case $size in
  auto | 16g | 24g | 80g) ;;
  *) die "unknown size '$size' (--size or SIZE): use auto, 16g (T4), 24g (A10) or 80g (A100/H100 80GB)" ;;
esac

DATA_TYPE=${DATA_TYPE:-$p_dtype}
FLOW_STEPS=${FLOW_STEPS:-$p_steps}
LOAD_TRT=${LOAD_TRT:-true}
MEM_CHECK=${MEM_CHECK:-on}
HOST=${HOST:-0.0.0.0}
PORT=${PORT:-8080}

# ---- values: check them before touching anything, so a typo costs nothing -------------------
# need_int NAME MIN MAX: canonical decimal only ("08" would be octal in bash arithmetic).
need_int() {
  local v=${!1}
  if ! [[ $v =~ ^[1-9][0-9]{0,8}$ ]] || ((v < $2 || v > $3)); then
    die "$1 must be an integer from $2 to $3, got '$v'"
  fi
}
need_int PORT 1 65535
need_int FLOW_STEPS 1 50
# The five sizes come from the size class unless set here. Their caps keep the memory estimate's
# arithmetic within 64 bits; every one is far beyond what a GPU holds.
size_vars=(MAX_TOTAL_TOKEN_NUM MAX_REQ_TOTAL_LEN BATCH_MAX_TOKENS GRAPH_MAX_BATCH_SIZE GRAPH_MAX_LEN_IN_BATCH)
declare -A size_cap=([MAX_TOTAL_TOKEN_NUM]=16777216 [MAX_REQ_TOTAL_LEN]=1048576 [BATCH_MAX_TOKENS]=1048576
  [GRAPH_MAX_BATCH_SIZE]=1024 [GRAPH_MAX_LEN_IN_BATCH]=1048576)
declare -A user=() # the sizes set in the environment
for v in "${size_vars[@]}"; do
  if [[ -n ${!v-} ]]; then
    need_int "$v" 1 "${size_cap[$v]}"
    user[$v]=${!v}
  fi
done

case $DATA_TYPE in
  fp16 | float16 | bf16 | bfloat16 | fp32 | float32) ;;
  *) die "unknown DATA_TYPE '$DATA_TYPE': use one of fp16 float16 bf16 bfloat16 fp32 float32" ;;
esac
# Pass a canonical word: upstream's type=bool read "False" as True; the patched parser takes these.
case ${LOAD_TRT,,} in
  true | 1 | yes) LOAD_TRT=true ;;
  false | 0 | no) LOAD_TRT=false ;;
  *) die "LOAD_TRT must be true or false (also 1/0/yes/no), got '$LOAD_TRT'" ;;
esac
case ${MEM_CHECK,,} in
  on | true | 1 | yes) MEM_CHECK=on ;;
  off | false | 0 | no) MEM_CHECK=off ;;
  *) die "MEM_CHECK must be on or off, got '$MEM_CHECK'" ;;
esac

# ---- extra server args: refuse what upstream would crash on or silently mis-read -------------
declare -A managed=([model_dir]=MODEL_DIR [host]=HOST [port]=PORT [data_type]=DATA_TYPE
  [flow_steps]=FLOW_STEPS [load_trt]=LOAD_TRT [max_total_token_num]=MAX_TOTAL_TOKEN_NUM
  [max_req_total_len]=MAX_REQ_TOTAL_LEN [batch_max_tokens]=BATCH_MAX_TOKENS
  [graph_max_batch_size]=GRAPH_MAX_BATCH_SIZE [graph_max_len_in_batch]=GRAPH_MAX_LEN_IN_BATCH)
switches=(trust_remote_code disable_log_stats sample_close health_monitor disable_cudagraph)
checked=("${!managed[@]}" "${switches[@]}" mode decode_process_num zmq_mode)
cudagraph=1 # the memory estimate counts CUDA-graph buffers unless --disable_cudagraph is given
for ((i = 0; i < ${#extra[@]}; i++)); do
  tok=${extra[i]}
  case $tok in
    *triton_int8kv*) die "--mode triton_int8kv is refused: it crashes at start-up in this LightTTS (the prefill kernel reads the int8 KV cache as fp16)" ;;
    *triton_int4weight*) die "--mode triton_int4weight is refused: it is a no-op in this LightTTS (nothing quantises the weights)" ;;
  esac
  [[ $tok == --?* ]] || continue
  name=${tok#--} name=${name%%=*}
  [[ -n $name ]] || continue
  # argparse expands unambiguous abbreviations ("--batch_max 1" means --batch_max_tokens), which
  # would slip past these checks; so the flags checked here must be spelled in full.
  # An exact name wins, as in argparse ("--mode" is a flag of its own, not short for --model_dir).
  flag=
  for f in "${checked[@]}"; do [[ $f != "$name" ]] || flag=$f; done
  if [[ -z $flag ]]; then
    for f in "${checked[@]}"; do
      [[ $f != "$name"* ]] || die "'$tok' abbreviates --$f: spell server flags in full after '--'"
    done
    continue
  fi
  if [[ $tok == *=* ]]; then value=${tok#*=}; else value=${extra[i + 1]-}; fi
  [[ -n ${managed[$flag]-} ]] &&
    die "--$flag is set by the launcher: use ${managed[$flag]}=... instead of passing it after '--'"
  # store_true switches: "--disable_cudagraph False" makes argparse exit with "unrecognized arguments".
  if [[ " ${switches[*]} " == *" $flag "* ]] && [[ $tok == *=* || (-n ${extra[i + 1]+x} && $value != -*) ]]; then
    die "--$flag is an on/off switch (store_true) and takes no value: write '--$flag' alone, or leave it out for off"
  fi
  case $flag in
    decode_process_num) [[ $value == 1 ]] || die "--decode_process_num must be 1: upstream asserts decode_process_num <= 1 at start-up" ;;
    zmq_mode) [[ $value == tcp:// || $value == ipc:///tmp/ ]] || die "--zmq_mode must be 'tcp://' or 'ipc:///tmp/' (upstream asserts it)" ;;
    disable_cudagraph) cudagraph=0 ;;
  esac
done

# ---- checkout and overlay --------------------------------------------------------------------
[[ -n ${LIGHTTTS_DIR-} ]] || die "LIGHTTTS_DIR is not set: point it at the LightTTS checkout patched with apply_patches.py"
[[ -d $LIGHTTTS_DIR ]] || die "LIGHTTTS_DIR=$LIGHTTTS_DIR does not exist: clone ModelTC/LightTTS with --recursive and run apply_patches.py on it"
[[ -f $LIGHTTTS_DIR/light_tts/server/api_server.py ]] ||
  die "LIGHTTTS_DIR=$LIGHTTTS_DIR is not a LightTTS checkout (no light_tts/server/api_server.py): clone ModelTC/LightTTS with --recursive there"
LIGHTTTS_DIR=$(cd "$LIGHTTTS_DIR" && pwd) # absolute: the server runs from inside it
[[ -f $SCRIPT_DIR/apply_patches.py ]] || die "apply_patches.py is missing next to $0: use the launcher from the lighttts-a10 checkout"
status_rc=0
status_out=$("$PY" "$SCRIPT_DIR/apply_patches.py" --status "$LIGHTTTS_DIR" 2>&1) || status_rc=$?
((status_rc == 0)) || die "the A10 overlay is not fully applied to $LIGHTTTS_DIR (apply_patches.py --status exit $status_rc):
$status_out
Run: $PY $SCRIPT_DIR/apply_patches.py $LIGHTTTS_DIR"
[[ -d $LIGHTTTS_DIR/cosyvoice/cosyvoice ]] ||
  die "$LIGHTTTS_DIR/cosyvoice/cosyvoice is missing: run 'git submodule update --init --recursive' in $LIGHTTTS_DIR"
# Matcha-TTS is LightTTS's submodule at both 30bc57b and ad1c76e; CosyVoice's own copy is a fallback.
matcha=
for d in "$LIGHTTTS_DIR/third_party/Matcha-TTS" "$LIGHTTTS_DIR/cosyvoice/third_party/Matcha-TTS"; do
  if [[ -d $d/matcha ]]; then matcha=$d; break; fi
done
[[ -n $matcha ]] || die "Matcha-TTS is missing (no $LIGHTTTS_DIR/third_party/Matcha-TTS/matcha): run 'git submodule update --init --recursive' in $LIGHTTTS_DIR"

# ---- GPU: the server uses CUDA device 0, so check (and pin) the first visible GPU ------------
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver here, so no GPU to run on"
gpu_sel=()
if [[ -n ${CUDA_VISIBLE_DEVICES+x} ]]; then
  gpu=${CUDA_VISIBLE_DEVICES%%,*} gpu=${gpu// /}
  [[ -n $gpu && $gpu != -* ]] || die "CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' hides every GPU: unset it or name one (e.g. 0)"
  gpu_sel=(-i "$gpu")
else
  gpu=0
fi
smi_rc=0
smi_out=$(nvidia-smi "${gpu_sel[@]}" --query-gpu=name,compute_cap --format=csv,noheader 2>&1) || smi_rc=$?
gpu_line=${smi_out%%$'\n'*}
[[ $smi_rc == 0 && $gpu_line == *,* ]] || die "no usable GPU: 'nvidia-smi ${gpu_sel[*]} --query-gpu=name,compute_cap' said: ${smi_out:-nothing} (exit $smi_rc)"
gpu_name=${gpu_line%,*} cap=${gpu_line##*,} cap=${cap// /}
[[ $cap =~ ^([0-9]+)\.([0-9]+)$ ]] || die "cannot read the compute capability of '$gpu_name' (got '$cap'): update the NVIDIA driver"
major=${BASH_REMATCH[1]} sm=${BASH_REMATCH[1]}${BASH_REMATCH[2]} # "8.6" -> sm86, as in upstream's plan name
if [[ $DATA_TYPE == bf16 || $DATA_TYPE == bfloat16 ]] && ((major < 8)); then
  die "DATA_TYPE=$DATA_TYPE needs bfloat16 (compute capability >= 8.0), but '$gpu_name' is $cap: start with --profile fp16 (or DATA_TYPE=float16)"
fi

# Total and free memory in MiB (free: what other processes, e.g. another server, leave to this one).
mem_total='' mem_free=''
mem_out=$(nvidia-smi "${gpu_sel[@]}" --query-gpu=memory.total,memory.free --format=csv,noheader,nounits 2>&1) || true
if [[ ${mem_out%%$'\n'*} =~ ^\ *([0-9]{1,9})\ *,\ *([0-9]{1,9})\ *$ ]]; then
  mem_total=$((10#${BASH_REMATCH[1]})) mem_free=$((10#${BASH_REMATCH[2]}))
elif [[ $MEM_CHECK == on ]]; then
  die "cannot read the memory of '$gpu_name': 'nvidia-smi ${gpu_sel[*]} --query-gpu=memory.total,memory.free --format=csv,noheader,nounits' said: ${mem_out:-nothing}. Set MEM_CHECK=off to start without the memory check"
fi

MODEL_DIR=${MODEL_DIR:-$LIGHTTTS_DIR/pretrained_models/CosyVoice2-0.5B}
[[ $MODEL_DIR == /* ]] || MODEL_DIR=$PWD/$MODEL_DIR
plan=$MODEL_DIR/flow.decoder.estimator.fp16.sm$sm.plan
onnx=$MODEL_DIR/flow.decoder.estimator.fp32.onnx
trt_build=0 # upstream rebuilds a missing or empty plan at start-up
[[ $LOAD_TRT != true || -s $plan ]] || trt_build=1

# ---- sizes, and the GPU memory they need -----------------------------------------------------
# Size classes: KV-cache tokens, longest request, prefill tokens (a multiple of the longest request),
# CUDA-graph batch sizes. The CUDA graphs cover decode batches up to the longest request, which no
# batch exceeds (docs/launcher.md, "Sizes").
declare -A class_total=([16g]=32768 [24g]=65536 [80g]=131072) class_req=([16g]=2048 [24g]=2048 [80g]=4096)
declare -A class_batch=([16g]=1 [24g]=1 [80g]=2) class_graph=([16g]=16 [24g]=32 [80g]=32)
use_sizes() { # CLASS: each size from the environment, else from CLASS
  MAX_TOTAL_TOKEN_NUM=${user[MAX_TOTAL_TOKEN_NUM]:-${class_total[$1]}}
  MAX_REQ_TOTAL_LEN=${user[MAX_REQ_TOTAL_LEN]:-${class_req[$1]}}
  BATCH_MAX_TOKENS=${user[BATCH_MAX_TOKENS]:-$((class_batch[$1] * MAX_REQ_TOTAL_LEN))}
  GRAPH_MAX_BATCH_SIZE=${user[GRAPH_MAX_BATCH_SIZE]:-${class_graph[$1]}}
  GRAPH_MAX_LEN_IN_BATCH=${user[GRAPH_MAX_LEN_IN_BATCH]:-$MAX_REQ_TOTAL_LEN}
}

# The memory model: mem_estimate below; docs/launcher.md ("Where the memory goes") derives each term
# with file:line. "measured" = on an H100 80GB, torch 2.11, 30bc57b patched, random weights
# (results/2026-11-24-h100, results/2026-11-25-h100).
MEM_LLM_FIXED_MIB=903    # LLM process beyond its tensors (CUDA context, cuBLAS, Triton): measured 6352 at start with the 24g sizes minus 5449 computed (2026-11-25; 867 on 2026-11-24)
MEM_DECODE_MIB=2108      # decode process (flow + HiFT) serving 8 s requests, no TensorRT, no flow CUDA graphs: measured; with the estimator's graphs (0006) it measured 2860 at start, 2938 at peak, with the encoder's and HiFT's too (0006, 0007) 3536 and 3540 (2026-11-26, H200): within the frame and load terms below
MEM_DECODE_LOAD_MIB=1929 # 30bc57b's decode start-up reads llm.pt (505.8 M fp32 parameters) onto the GPU, then drops it: from the code
MEM_TRT_ENGINE_MIB=1024  # TensorRT estimator engine and its activations at 3000 mel frames: estimate (no TensorRT on the GPU machine)
MEM_TRT_BUILD_MIB=4096   # building the plan on the first start: the builder's 4 GiB workspace limit: from the code
MEM_ENCODE_MIB=1536      # encode process: 612 measured (CUDA context, CPU onnxruntime; again on 2026-11-25) + ~900 for onnxruntime-gpu: estimate
MEM_MARGIN_PCT=10        # allocator fragmentation and what the model leaves out

cuda_blocks() { # COUNT BYTES: add to mem_estimate's acc what PyTorch's caching allocator reserves for COUNT such tensors
  local b=$((($2 + 511) >> 9 << 9)) mib=1048576 # whole 512-byte units
  if ((b > 10 * mib)); then
    b=$(((b + 2 * mib - 1) >> 21 << 21)) # large: rounded up to 2 MiB
  elif ((b > mib)); then
    b=$((20 * mib / (20 * mib / b))) # 1-10 MiB: carved from 20 MiB segments, the rest stays unused
  fi                                 # up to 1 MiB: packed into 2 MiB segments
  acc=$((acc + $1 * b))
}

mem_estimate() { # the current sizes -> mem_* (MiB); mem_need is the total
  local dt=2 mib=1048576 b=$GRAPH_MAX_BATCH_SIZE t=$BATCH_MAX_TOKENS acc=0 seq blocks layer frames trt=0 load
  [[ $DATA_TYPE != fp32 && $DATA_TYPE != float32 ]] || dt=4
  # LLM (Qwen2-0.5B: hidden 896, 24 layers, 14 query and 2 KV heads of 64, MLP 4864, vocabulary 151936,
  # 6564 speech tokens): 641.9 M parameters on the GPU, the unused lm_head included; KV cache 12 KiB a
  # token at 16 bits; RoPE tables for 163840 positions; the request-to-token table.
  mem_weights=$((641938468 * dt / mib))
  mem_kv=$((MAX_TOTAL_TOKEN_NUM * 2 * 2 * 64 * 24 * dt / mib))
  seq=$((t > MAX_REQ_TOTAL_LEN + 8 ? t : MAX_REQ_TOTAL_LEN + 8))
  mem_llm=$((MEM_LLM_FIXED_MIB + mem_weights + mem_kv + (2 * 163840 * 32 * dt + 109 * seq * 4) / mib))
  # CUDA graphs: each batch size from B down to 1 runs once eagerly and once under capture, and every
  # one of the 24 layers takes new buffers sized for batch B (none is reused): six 896 wide, gate+up
  # 9728, SiLU 4864, and flash-decoding's fp32 partials over GRAPH_MAX_LEN_IN_BATCH/256+1 blocks.
  mem_graphs=0
  if ((cudagraph)); then
    blocks=$((GRAPH_MAX_LEN_IN_BATCH / 256 + 1)) acc=0
    cuda_blocks 6 $((b * 896 * dt)); cuda_blocks 1 $((b * 9728 * dt)); cuda_blocks 1 $((b * 4864 * dt))
    cuda_blocks 1 $((b * 14 * blocks * 64 * 4)); cuda_blocks 1 $((b * 14 * blocks * 4))
    layer=$acc acc=0
    cuda_blocks 1 $((b * 896 * dt)); cuda_blocks 1 $((b * 6564 * dt)) # embeddings, logits
    mem_graphs=$(((2 * b * (24 * layer + acc) + b * 6564 * 4) / mib))
  fi
  mem_llm=$((mem_llm + mem_graphs))
  # Prefill of BATCH_MAX_TOKENS tokens (the start-up check, and any full prefill batch later): the same
  # eight activations in each layer, again none reused, plus embeddings, new K/V and RoPE rows.
  acc=0
  cuda_blocks 144 $((t * 896 * dt)); cuda_blocks 24 $((t * 9728 * dt)); cuda_blocks 24 $((t * 4864 * dt))
  cuda_blocks 1 $((t * 896 * dt)); cuda_blocks 1 $((t * 256 * dt)); cuda_blocks 2 $((t * 32 * dt))
  mem_prefill=$((acc / mib))
  # Decode: the flow encoder's attention holds about 144 bytes per pair of mel frames at its peak, for
  # the longest request (2 frames a token) up to the 3000 frames that the TensorRT profile takes.
  frames=$((2 * MAX_REQ_TOTAL_LEN < 3000 ? 2 * MAX_REQ_TOTAL_LEN : 3000))
  [[ $LOAD_TRT != true ]] || trt=$MEM_TRT_ENGINE_MIB
  load=$((trt_build ? MEM_TRT_BUILD_MIB : trt))
  ((load > MEM_DECODE_LOAD_MIB)) || load=$MEM_DECODE_LOAD_MIB
  mem_decode=$((MEM_DECODE_MIB + 144 * frames * frames / mib + trt))
  ((mem_decode > MEM_DECODE_MIB + load)) || mem_decode=$((MEM_DECODE_MIB + load))
  # Every process at its own peak at once, plus the margin.
  mem_need=$((mem_llm + mem_prefill + mem_decode + MEM_ENCODE_MIB))
  mem_margin=$((mem_need * MEM_MARGIN_PCT / 100))
  mem_need=$((mem_need + mem_margin))
}

# --size auto: the class of the card, by its total memory (the check below then weighs the free memory).
if [[ $size != auto ]]; then
  size_class=$size size_note="--size $size"
elif [[ -z $mem_total ]]; then
  size_class=24g size_note="auto; GPU memory unknown"
else
  size_class=16g
  ((mem_total < 20 * 1024)) || size_class=24g # an A10 reports 23028 MiB, a T4 15360
  ((mem_total < 70 * 1024)) || size_class=80g # an 80 GB A100 or H100 about 81000
  size_note="auto, for $mem_total MiB"
fi
use_sizes "$size_class"

# The two asserts at the top of upstream's normal_start().
((MAX_REQ_TOTAL_LEN <= MAX_TOTAL_TOKEN_NUM)) ||
  die "MAX_REQ_TOTAL_LEN ($MAX_REQ_TOTAL_LEN) must be <= MAX_TOTAL_TOKEN_NUM ($MAX_TOTAL_TOKEN_NUM) (upstream asserts it at start-up)"
((BATCH_MAX_TOKENS >= MAX_REQ_TOTAL_LEN)) ||
  die "BATCH_MAX_TOKENS ($BATCH_MAX_TOKENS) must be >= MAX_REQ_TOTAL_LEN ($MAX_REQ_TOTAL_LEN) (upstream asserts it at start-up); raise it or leave it unset"

mem_estimate
mem_parts="LLM process $mem_llm (weights $mem_weights, KV cache $mem_kv, CUDA graphs $mem_graphs) + its prefill peak $mem_prefill, decode process $mem_decode, encode process $MEM_ENCODE_MIB, margin $mem_margin"

fit_value() { # VAR LOW: REPLY = the largest VAR in [LOW, now) at which the estimate fits, else empty
  local var=$1 lo=$2 hi=$((${!1} - 1)) mid had=${user[$1]-}
  REPLY=''
  while ((lo <= hi)); do
    mid=$(((lo + hi) / 2)) user[$var]=$mid
    use_sizes "$size_class"
    mem_estimate
    if ((mem_need <= mem_free)); then REPLY=$mid lo=$((mid + 1)); else hi=$((mid - 1)); fi
  done
  if [[ -n $had ]]; then user[$var]=$had; else unset 'user[$var]'; fi
  use_sizes "$size_class"
}

mem_advice() { # -> advice: which sizes to lower, and to what, so that the estimate fits
  local v low c hints=() combo=()
  declare -A had=() lowest=([GRAPH_MAX_BATCH_SIZE]=1 [GRAPH_MAX_LEN_IN_BATCH]=256 [MAX_REQ_TOTAL_LEN]=256)
  for v in "${!user[@]}"; do had[$v]=${user[$v]}; done
  # One size alone. Upstream asserts BATCH_MAX_TOKENS and MAX_TOTAL_TOKEN_NUM >= MAX_REQ_TOTAL_LEN;
  # below 256 tokens a prompt and a sentence no longer fit in one request.
  for v in GRAPH_MAX_BATCH_SIZE GRAPH_MAX_LEN_IN_BATCH BATCH_MAX_TOKENS MAX_REQ_TOTAL_LEN MAX_TOTAL_TOKEN_NUM; do
    low=${lowest[$v]:-$MAX_REQ_TOTAL_LEN}
    fit_value "$v" "$low"
    [[ -z $REPLY ]] || hints+=("$v from ${!v} to $REPLY")
  done
  for c in 24g 16g; do # a smaller class
    [[ $size_class == 80g || ($size_class == 24g && $c == 16g) ]] || continue
    use_sizes "$c"
    mem_estimate
    if ((mem_need <= mem_free)); then hints+=("every size at once with --size $c (or SIZE=$c)"); break; fi
  done
  use_sizes "$size_class"
  if ((${#hints[@]})); then
    printf -v advice '%s, or ' "${hints[@]}"
    advice="lower ${advice%, or }"
  else
    # Several together. BATCH_MAX_TOKENS and GRAPH_MAX_LEN_IN_BATCH follow the request length when unset;
    # then, until one size alone makes it fit, take the next to its lowest: the KV cache first (it only
    # limits concurrency), then the CUDA graphs' batch sizes.
    advice=''
    for v in BATCH_MAX_TOKENS GRAPH_MAX_LEN_IN_BATCH; do
      if [[ -n ${user[$v]-} ]]; then unset 'user[$v]'; combo+=("$v unset"); fi
    done
    use_sizes "$size_class"
    local rest=(MAX_TOTAL_TOKEN_NUM GRAPH_MAX_BATCH_SIZE MAX_REQ_TOTAL_LEN)
    while :; do
      mem_estimate
      if ((mem_need <= mem_free)); then advice=fits; break; fi
      for v in "${rest[@]}"; do
        fit_value "$v" "${lowest[$v]:-$MAX_REQ_TOTAL_LEN}"
        if [[ -n $REPLY ]]; then combo+=("$v=$REPLY") advice=fits; break 2; fi
      done
      ((${#rest[@]})) || break
      v=${rest[0]} rest=("${rest[@]:1}")
      low=${lowest[$v]:-$MAX_REQ_TOTAL_LEN}
      ((${!v} <= low)) || combo+=("$v=$low")
      user[$v]=$low
      use_sizes "$size_class"
    done
    mem_estimate
    if [[ -n $advice ]]; then
      printf -v advice '%s, ' "${combo[@]}"
      advice="lower several sizes together, e.g. ${advice%, }"
    else
      printf -v advice '%s, ' "${combo[@]}"
      advice="even the smallest sizes (${advice%, }) need about $mem_need MiB: use a GPU with more free memory"
    fi
  fi
  user=()
  for v in "${!had[@]}"; do user[$v]=${had[$v]}; done
  use_sizes "$size_class"
  mem_estimate
}

if [[ -n $mem_free ]] && ((mem_need > mem_free)); then
  mem_advice
  others=''
  ((mem_total - mem_free < 1024)) || others=" (other processes hold $((mem_total - mem_free)) MiB of it)"
  message="GPU $gpu ('$gpu_name') has $mem_free MiB free of $mem_total MiB$others, but this configuration needs about $mem_need MiB: $mem_parts (size class $size_class; docs/launcher.md explains each part). To fit, $advice"
  if [[ $MEM_CHECK == on ]]; then
    die "$message; or free GPU memory. MEM_CHECK=off starts anyway."
  fi
  note "warning (MEM_CHECK=off, starting anyway): $message"
fi

# ---- model directory -------------------------------------------------------------------------
if ((download)); then
  "$PY" -c 'import modelscope' 2>/dev/null || die "--download needs the Python package modelscope for $PY: pip install modelscope"
  note "downloading $MODEL_ID into $MODEL_DIR (modelscope)"
  "$PY" - "$MODEL_ID" "$MODEL_DIR" <<'EOF' || die "downloading $MODEL_ID into $MODEL_DIR failed (see above)"
import sys
from modelscope import snapshot_download
snapshot_download(sys.argv[1], local_dir=sys.argv[2])
EOF
fi
missing=()
for f in cosyvoice2.yaml llm.pt flow.pt hift.pt campplus.onnx speech_tokenizer_v2.onnx; do
  [[ -f $MODEL_DIR/$f ]] || missing+=("$f")
done
[[ -d $MODEL_DIR/CosyVoice-BlankEN ]] || missing+=(CosyVoice-BlankEN/)
((${#missing[@]} == 0)) || die "model directory $MODEL_DIR lacks: ${missing[*]}. Set MODEL_DIR to a CosyVoice2-0.5B download, or add --download"

# ---- TensorRT flow decoder (fp16 engine, built per GPU architecture) --------------------------
trt_state=off
if [[ $LOAD_TRT == true ]]; then
  trt_err=$("$PY" -c 'import tensorrt' 2>&1) ||
    die "LOAD_TRT=true but $PY cannot import tensorrt (${trt_err##*$'\n'}): install TensorRT for Python, or set LOAD_TRT=false"
  if [[ -s $plan ]]; then # upstream rebuilds an empty plan, so only a non-empty one counts
    trt_state="plan $plan"
  elif [[ -f $onnx ]]; then
    # Create a file there, as the build will: [[ -w ]] is always true for root, even where writing fails.
    write_err=$("$PY" -c 'import sys, tempfile; tempfile.NamedTemporaryFile(dir=sys.argv[1], prefix=".launch_a10-").close()' "$MODEL_DIR" 2>&1) ||
      die "the TensorRT plan must be built into $MODEL_DIR, but no file can be created there (${write_err##*$'\n'}): fix its permissions, or set LOAD_TRT=false"
    trt_state="build $plan from the ONNX"
    note "no TensorRT plan for sm$sm yet: the first start builds $plan from $onnx, which takes minutes"
  else
    die "LOAD_TRT=true needs $plan or $onnx: add --download (the ONNX ships with the model), or set LOAD_TRT=false"
  fi
fi

# ---- port: the server binds ("", PORT) to lock it, then gunicorn binds HOST:PORT -------------
port_err=$("$PY" - "$HOST" "$PORT" <<'EOF' 2>&1
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    addrs = [(socket.AF_INET, ("", port))]
    addrs += [(a[0], a[4]) for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[:1]]
    for family, addr in addrs:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as upstream and gunicorn do
            s.bind(addr)
            s.listen(1)
except OSError as e:
    sys.exit(f"{e.strerror or e}")
EOF
) || die "cannot listen on $HOST:$PORT (${port_err##*$'\n'}): stop whatever uses it, or set PORT/HOST"

# ---- the command -----------------------------------------------------------------------------
envs=("PYTHONPATH=$LIGHTTTS_DIR:$LIGHTTTS_DIR/cosyvoice:$matcha${PYTHONPATH:+:$PYTHONPATH}"
  "CUDA_VISIBLE_DEVICES=$gpu" "CUDA_DEVICE_ORDER=${CUDA_DEVICE_ORDER:-PCI_BUS_ID}") # nvidia-smi numbers GPUs in PCI order
cmd=("$PY" -m light_tts.server.api_server --model_dir "$MODEL_DIR" --host "$HOST" --port "$PORT"
  --data_type "$DATA_TYPE" --flow_steps "$FLOW_STEPS" --load_trt "$LOAD_TRT"
  --max_total_token_num "$MAX_TOTAL_TOKEN_NUM" --max_req_total_len "$MAX_REQ_TOTAL_LEN"
  --batch_max_tokens "$BATCH_MAX_TOKENS" --graph_max_batch_size "$GRAPH_MAX_BATCH_SIZE"
  --graph_max_len_in_batch "$GRAPH_MAX_LEN_IN_BATCH" "${extra[@]}")

{
  echo "launch_a10.sh: effective configuration"
  if [[ -n $mem_free ]]; then gpu_memory="$mem_free MiB free of $mem_total MiB"; else gpu_memory="unknown (MEM_CHECK=off)"; fi
  printf '  %-23s %s\n' gpu "$gpu_name (sm$sm, CUDA_VISIBLE_DEVICES=$gpu)" gpu_memory "$gpu_memory" \
    profile "$profile" data_type "$DATA_TYPE" flow_steps "$FLOW_STEPS" load_trt "$LOAD_TRT ($trt_state)" \
    model_dir "$MODEL_DIR" listen "$HOST:$PORT" size "$size_class ($size_note)" \
    max_total_token_num "$MAX_TOTAL_TOKEN_NUM" max_req_total_len "$MAX_REQ_TOTAL_LEN" \
    batch_max_tokens "$BATCH_MAX_TOKENS" graph_max_batch_size "$GRAPH_MAX_BATCH_SIZE" \
    graph_max_len_in_batch "$GRAPH_MAX_LEN_IN_BATCH" extra_args "${extra[*]:-(none)}" \
    memory_estimate "about $mem_need MiB: $mem_parts"
} >&2

if ((dry_run)); then
  printf -v line 'cd %q &&' "$LIGHTTTS_DIR"
  for e in "${envs[@]}"; do printf -v line '%s %s=%q' "$line" "${e%%=*}" "${e#*=}"; done
  for w in "${cmd[@]}"; do printf -v line '%s %q' "$line" "$w"; done
  printf '%s\n' "$line"
  exit 0
fi
cd "$LIGHTTTS_DIR"
export "${envs[@]}"
exec "${cmd[@]}"
