#!/usr/bin/env bash
# launch_a10.sh: start a LightTTS checkout patched by apply_patches.py (CosyVoice2-0.5B)
# with settings that upstream's parser and the start-up asserts in api_start.py accept.
#
# Usage: launch_a10.sh [--dry-run] [--profile speed|quality|fp16] [--download] [-- EXTRA_SERVER_ARGS...]
#   --dry-run     run every check, then print the server command on stdout instead of running it
#   --profile     speed (bf16 LLM, 5 flow steps; default), quality (bf16, 10), fp16 (fp16, 8; GPUs without bf16)
#   --download    fetch iic/CosyVoice2-0.5B into MODEL_DIR with modelscope first
# Environment (explicit values win over the profile): LIGHTTTS_DIR (required), MODEL_DIR, HOST, PORT,
#   FLOW_STEPS, DATA_TYPE, LOAD_TRT, CUDA_VISIBLE_DEVICES, MAX_TOTAL_TOKEN_NUM, MAX_REQ_TOTAL_LEN,
#   BATCH_MAX_TOKENS, GRAPH_MAX_BATCH_SIZE, PYTHON. See docs/launcher.md.
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
dry_run=0 download=0 profile=speed extra=()
while (($#)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --download) download=1 ;;
    --profile) (($# > 1)) || die "--profile needs a value: speed, quality or fp16"; profile=$2; shift ;;
    --profile=*) profile=${1#*=} ;;
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

DATA_TYPE=${DATA_TYPE:-$p_dtype}
FLOW_STEPS=${FLOW_STEPS:-$p_steps}
LOAD_TRT=${LOAD_TRT:-true}
HOST=${HOST:-0.0.0.0}
PORT=${PORT:-8080}
MAX_TOTAL_TOKEN_NUM=${MAX_TOTAL_TOKEN_NUM:-65536}
MAX_REQ_TOTAL_LEN=${MAX_REQ_TOTAL_LEN:-32768}
BATCH_MAX_TOKENS=${BATCH_MAX_TOKENS:-$MAX_REQ_TOTAL_LEN}
GRAPH_MAX_BATCH_SIZE=${GRAPH_MAX_BATCH_SIZE:-32}

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
need_int MAX_TOTAL_TOKEN_NUM 1 999999999
need_int MAX_REQ_TOTAL_LEN 1 999999999
need_int BATCH_MAX_TOKENS 1 999999999
need_int GRAPH_MAX_BATCH_SIZE 1 999999999
# The two asserts at the top of upstream's normal_start().
((MAX_REQ_TOTAL_LEN <= MAX_TOTAL_TOKEN_NUM)) ||
  die "MAX_REQ_TOTAL_LEN ($MAX_REQ_TOTAL_LEN) must be <= MAX_TOTAL_TOKEN_NUM ($MAX_TOTAL_TOKEN_NUM) (upstream asserts it at start-up)"
((BATCH_MAX_TOKENS >= MAX_REQ_TOTAL_LEN)) ||
  die "BATCH_MAX_TOKENS ($BATCH_MAX_TOKENS) must be >= MAX_REQ_TOTAL_LEN ($MAX_REQ_TOTAL_LEN) (upstream asserts it at start-up); raise it or leave it unset"

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

# ---- extra server args: refuse what upstream would crash on or silently mis-read -------------
declare -A managed=([model_dir]=MODEL_DIR [host]=HOST [port]=PORT [data_type]=DATA_TYPE
  [flow_steps]=FLOW_STEPS [load_trt]=LOAD_TRT [max_total_token_num]=MAX_TOTAL_TOKEN_NUM
  [max_req_total_len]=MAX_REQ_TOTAL_LEN [batch_max_tokens]=BATCH_MAX_TOKENS
  [graph_max_batch_size]=GRAPH_MAX_BATCH_SIZE)
switches=(trust_remote_code disable_log_stats sample_close health_monitor disable_cudagraph)
checked=("${!managed[@]}" "${switches[@]}" mode decode_process_num zmq_mode)
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

# ---- model directory -------------------------------------------------------------------------
MODEL_DIR=${MODEL_DIR:-$LIGHTTTS_DIR/pretrained_models/CosyVoice2-0.5B}
[[ $MODEL_DIR == /* ]] || MODEL_DIR=$PWD/$MODEL_DIR
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
plan=$MODEL_DIR/flow.decoder.estimator.fp16.sm$sm.plan
onnx=$MODEL_DIR/flow.decoder.estimator.fp32.onnx
trt_state=off
if [[ $LOAD_TRT == true ]]; then
  trt_err=$("$PY" -c 'import tensorrt' 2>&1) ||
    die "LOAD_TRT=true but $PY cannot import tensorrt (${trt_err##*$'\n'}): install TensorRT for Python, or set LOAD_TRT=false"
  if [[ -s $plan ]]; then # upstream rebuilds an empty plan, so only a non-empty one counts
    trt_state="plan $plan"
  elif [[ -f $onnx ]]; then
    [[ -w $MODEL_DIR ]] || die "the TensorRT plan must be built into $MODEL_DIR, which is not writable: fix its permissions, or set LOAD_TRT=false"
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
  --batch_max_tokens "$BATCH_MAX_TOKENS" --graph_max_batch_size "$GRAPH_MAX_BATCH_SIZE" "${extra[@]}")

{
  echo "launch_a10.sh: effective configuration"
  printf '  %-21s %s\n' gpu "$gpu_name (sm$sm, CUDA_VISIBLE_DEVICES=$gpu)" profile "$profile" \
    data_type "$DATA_TYPE" flow_steps "$FLOW_STEPS" load_trt "$LOAD_TRT ($trt_state)" \
    model_dir "$MODEL_DIR" listen "$HOST:$PORT" max_total_token_num "$MAX_TOTAL_TOKEN_NUM" \
    max_req_total_len "$MAX_REQ_TOTAL_LEN" batch_max_tokens "$BATCH_MAX_TOKENS" \
    graph_max_batch_size "$GRAPH_MAX_BATCH_SIZE" extra_args "${extra[*]:-(none)}"
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
