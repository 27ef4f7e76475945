#!/usr/bin/env bash
# What runs on the H200 (the device machine): the CUDA backend on the golden checkpoint (run,
# generate, both expert and attention paths, a bad checkpoint), compute-sanitizer memcheck and
# racecheck, and the benchmark against the PyTorch baseline. It needs node, which the machine lacks:
# carry .gpu/node.xz (xz of a Node 20 binary), dist/ (dist/lingc.mjs, and dist/lingc.mjs.map for provenance that
# names models/*.ts in the profiles' labels), and node_modules/esbuild + node_modules/@esbuild (model files such as
# examples/toy-mlp.ts are bundled with esbuild); the golden checkpoint is in tests/data (see README).
# usage: bench/cuda/device.sh checks|correct|selftest|decodeab|flagsab|rowsab|fp8ab|fp8env|fp8gather|fp8pairs|fp8epilogue|attnepilogue|attndecode|rowncu|fp8proj|qprologue|envbuild|envab|stamps|fp8quick|wgmmawait|wstiles|prefillab|gemmncu|gridsync|flagchain|flashwgmma|sanitize|bench|accept14|strong|draft|tiles|flashtile|gemvtile|decattn|routerwarp|gemvsplit|alt|decsplit|wgsl|compare|train|trainmem|stages|pipebench|chunkprofile|wide|ling1t|fp8|fp8experts|fp8other|unseen|fp8tiles|fp8bench|profile   (logs and results go to $OUT)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lingc-out}
mkdir -p "$OUT" /tmp/node
[ -x /tmp/node/node ] || python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/node.xz'), open('/tmp/node/node', 'wb'))"
chmod +x /tmp/node/node
export PATH=/tmp/node:$PATH LINGC_CACHE_DIR=/tmp/lingc-cache
# cuBLASLt's library folder (the toolkit's; bench/cuda/fp8_gemm.cu links it)
CUDA_LT=$(dirname "$(ls /usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so* 2>/dev/null | head -1)")
G=tests/data/golden/ling-tiny
L="node --enable-source-maps dist/lingc.mjs"
PROMPT=$(python3 -c "
from safetensors.numpy import load_file
g = load_file('$G/golden.safetensors'); ids = g['input_ids']
print(';'.join(','.join(str(int(x)) for x in row) for row in ids))")
WANT=$(python3 -c "
from safetensors.numpy import load_file
g = load_file('$G/golden.safetensors'); ids = g['greedy_ids']
print('|'.join(' '.join(str(int(x)) for x in row[12:]) for row in ids))")

# FP8 (W8A8) Ling-mini built under settings (VAR=VALUE ...) as fp8ab's mini8-env0, which fp8ab then
# reuses, and compute-sanitizer memcheck on its decode 1x64 (logged to $OUT/san-TAG-memcheck.txt):
# mini8_env0_memcheck TAG VAR=VALUE...; its status is memcheck's.
mini8_env0_memcheck() {
  local tag=$1; shift
  rm -rf /tmp/mini8-env0
  env "$@" $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --quantize fp8 --activation-scheme dynamic --dtype bf16 --out /tmp/mini8-env0 >/dev/null && (cd /tmp/mini8-env0 && make -j16 >/dev/null) || return 1
  echo "== memcheck, Ling-mini FP8 with $*, decode 1x64"
  compute-sanitizer --tool memcheck --error-exitcode 9 /tmp/mini8-env0/lingc_model bench --random-weights --prefill "" --decode 1x64 --repeats 1 > "$OUT/san-$tag-memcheck.txt" 2>&1
  local r=$?; echo "memcheck exit $r"
  grep -m2 -A8 "Invalid\|rror" "$OUT/san-$tag-memcheck.txt" | head -30; tail -1 "$OUT/san-$tag-memcheck.txt"
  return $r
}

# The FP8 experts module's check (fp8_check.py experts: SwiGLU h, then down y of h quantized again):
# the wgmma tile's h is within about 3e-4 of the interpreter's (Hopper's FP8 MMA keeps ~14 bits a
# 128-wide slice; the mma.sync tile is exact), and where h differs an e4m3 code of its quantization
# can land one step (1/16) away, so y is held to 1e-2; each GEMM from the same inputs is selftest's.
EXPERTS_Y="y=1e-2"

# compute-sanitizer memcheck and racecheck on one run of a program: sanitized TAG EXE ARGS... (logs
# $OUT/san-TAG-TOOL.txt; prints each tool's exit status, its first findings and its summary line).
sanitized() {
  local tag=$1; shift
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 "$@" > "$OUT/san-$tag-$tool.txt" 2>&1; echo "$tool exit $?"
    grep -m3 -A3 "Invalid\|Race\|Hazard\|rror" "$OUT/san-$tag-$tool.txt" | grep -v "ERROR SUMMARY"; tail -1 "$OUT/san-$tag-$tool.txt"
  done
}

# The three W8A8 projections of tests/data/golden/ling-small-fp8 on CUDA (fp8_check.py): the activation
# quantization's q and s bit-exact and y within 1e-5 with the generated kernel; cuBLASLt's within 1e-3.
fp8_projections() {
  local S=tests/data/golden/ling-small-fp8
  echo "== W8A8 per projection, the generated kernel (fp32 sums): y within 1e-5"
  mkdir -p /tmp/proj && python3 bench/cuda/fp8_check.py module /tmp/proj
  SEL="cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a"
  $L run /tmp/proj/p.lir --weights $S --backend cuda --passes "$SEL,prefer=fp8_linear:generated}" --input /tmp/proj/x.safetensors --out "$OUT/proj.safetensors" && python3 bench/cuda/fp8_check.py projections "$OUT/proj.safetensors"
  # Hopper's FP8 MMA sums each 128-wide K slice with fewer bits than fp32 (DeepSeek-V3 3.3.2): cuBLASLt's
  # block-scaled GEMM lands about 1e-4 of max |y| from the exact sum (bench/cuda/fp8_gemm.cu check), so
  # this run reports its error against the 1e-3 bound that tells a precision loss from a wrong scale.
  echo "== W8A8 per projection, the default dispatch (cuBLASLt's block-scaled FP8 GEMM where rows % 4 == 0)"
  $L run /tmp/proj/p.lir --weights $S --backend cuda --input /tmp/proj/x.safetensors --out "$OUT/proj-tc.safetensors" && python3 bench/cuda/fp8_check.py projections "$OUT/proj-tc.safetensors" 1e-3
  echo "== the same, the quantized inputs internal (their scales stored K-block-major for cuBLASLt: no transpose)"
  python3 bench/cuda/fp8_check.py module /tmp/proj y
  $L run /tmp/proj/p-y.lir --weights $S --backend cuda --input /tmp/proj/x.safetensors --out "$OUT/proj-km.safetensors" && python3 bench/cuda/fp8_check.py projections "$OUT/proj-km.safetensors" 1e-3
}

# The router kernels against the interpreter (bench/cuda/router_check.py: Ling-mini's router on 37
# tokens; the indices equal, the weights within 1e-4): router_check [--prefer ...]; its program is the
# last one built.
router_check() {
  mkdir -p /tmp/rt && python3 bench/cuda/router_check.py make /tmp/rt || return 1
  echo "== router vs interp $*"; $L compare /tmp/rt/r.lir --weights /tmp/rt/w.safetensors --input /tmp/rt/x.safetensors --backends interp,cuda "$@" | tail -4
}

# Attention kernels against the interpreter (bench/cuda/attention_check.py MODE: its prefill or its
# decode shapes, into DIR): CUDA with the preference ALT and with the default dispatch, each compared
# within 1e-2 of the largest value, then compute-sanitizer memcheck and racecheck on the default's
# program (logs $OUT/san-TAG-TOOL.txt).
attention_check() {
  local mode=$1 dir=$2 alt=$3 tag=$4
  mkdir -p $dir && python3 bench/cuda/attention_check.py $mode $dir || return 1
  local R="$dir/a.lir --input $dir/x.safetensors"
  $L run $R --backend interp --out $dir/interp.safetensors >/dev/null || return 1
  $L run $R --backend cuda $alt --out $dir/alt.safetensors >/dev/null || return 1
  $L run $R --backend cuda --out $dir/default.safetensors >/dev/null || return 1
  echo "== $alt vs interp"; python3 bench/cuda/attention_check.py compare $dir/alt.safetensors $dir/interp.safetensors 0.01
  echo "== the default dispatch vs interp"; python3 bench/cuda/attention_check.py compare $dir/default.safetensors $dir/interp.safetensors 0.01
  local exe=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)  # the last one built: the default's
  sanitized $tag $exe run --graph att --input $dir/x.safetensors --out $dir/s.safetensors
}

# Ling-mini builds in /tmp benchmarked alternately, two rounds, so that the machine's drift hits all:
# alternate PREFILL DECODE BUILD... (each row's median: prefill ms, decode's CUDA-graph ms a step).
alternate() {
  local pf=$1 dc=$2; shift 2
  for round in 1 2; do
    for m in "$@"; do echo "== $m, round $round${ALT_ARGS:+ ($ALT_ARGS)}"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill "$pf" --decode "$dc" --repeats 5 ${ALT_ARGS:-} | grep -oE '"seq": [0-9]*, "ms": [0-9.]*|"batch": [0-9]*, "cache": 2048, .*"graph_ms_per_step": [0-9.]*(, "graph_tokens_per_s": [0-9.]*, "bytes_per_step": [0-9]*, "GBps": [0-9.]*, "bandwidth_fraction": [0-9.]*)?'; done
  done
}

# The bf16 experts' tile program (the "grouped_gemm" kernel) on an uneven routing (bench/cuda/expert_check.py:
# an empty expert, one with every token, one with one row, K and column tails) against the interpreter
# and against one cuBLASLt GEMM per expert (expert_loop). bf16 results: a sum in another order can round
# one bf16 step the other way, and h's step moves y: 2^-6 of the largest value.
LOOP="--passes cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a,prefer=expert:expert_loop}"
experts_check() {
  mkdir -p /tmp/ex && python3 bench/cuda/expert_check.py make /tmp/ex || return 1
  local R="/tmp/ex/e.lir --weights /tmp/ex/w.safetensors --input /tmp/ex/e.safetensors"
  $L run $R --backend interp --out /tmp/ex/interp.safetensors >/dev/null || return 1
  $L run $R --backend cuda $LOOP --out /tmp/ex/loop.safetensors >/dev/null || return 1
  $L run $R --backend cuda --out /tmp/ex/cuda.safetensors >/dev/null || return 1
  echo "== tile program vs interp"; python3 bench/cuda/expert_check.py compare /tmp/ex/cuda.safetensors /tmp/ex/interp.safetensors 0.0156
  echo "== expert_loop (cuBLASLt per expert) vs interp"; python3 bench/cuda/expert_check.py compare /tmp/ex/loop.safetensors /tmp/ex/interp.safetensors 0.0156
  echo "== tile program vs expert_loop"; python3 bench/cuda/expert_check.py compare /tmp/ex/cuda.safetensors /tmp/ex/loop.safetensors 0.0156
}

# One sequence at decode batch 1 under a compile-time setting (one_sequence "VAR=VALUE ..." or ""):
# 10 greedy ids of the golden prompt's first row on ling-tiny and ling-small against the interpreter,
# then that run on ling-small under compute-sanitizer memcheck and racecheck ($OUT/san-one-TOOL.txt).
one_sequence() {
  local e=$1 P1=${PROMPT%%;*} C A B r tool
  for C in ling-tiny ling-small; do
    A=$($L generate tests/data/golden/$C --backend interp --prompt "$P1" --max-new-tokens 10 --ignore-eos 2>/dev/null)
    B=$(env $e $L generate tests/data/golden/$C --backend cuda --prompt "$P1" --max-new-tokens 10 --ignore-eos 2>/dev/null)
    [ -n "$B" ] && [ "$A" = "$B" ] && r=equal || r=DIFFERENT; echo "$C one sequence (decode batch 1) against interp: $r ($B / $A)"
  done
  for tool in memcheck racecheck; do
    env $e compute-sanitizer --tool $tool --target-processes all --error-exitcode 9 $L generate tests/data/golden/ling-small --backend cuda --prompt "$P1" --max-new-tokens 3 --ignore-eos > "$OUT/san-one-$tool.txt" 2>&1; echo "$tool exit $?"; grep -m3 "Invalid\|Race\|Hazard" "$OUT/san-one-$tool.txt"; grep "SUMMARY" "$OUT/san-one-$tool.txt" | sort | uniq -c
  done
}

case "${1:-correct}" in
checks)
  # One call for what a session's kernel changes need before they are measured, within the 8 files a
  # device call returns: correct (quick), sanitize and flashtile, each to its log; the logs' key lines
  # to stdout; every other file they leave in $OUT packed into checks-files.tgz.
  for m in correct sanitize flashtile; do
    echo "== $m"
    LINGC_QUICK=1 bash "$0" "$m" > "$OUT/$m.log" 2>&1; echo "exit $?"
    grep -E "PASS|FAIL|max abs error|worst|SUMMARY|error|exit [1-9]|seq|attention" "$OUT/$m.log" | grep -v "^lingc_model: error: /tmp/\(bad\|nan\|theta\)" | head -40
  done
  (cd "$OUT" && ls | grep -v -E '^(correct|sanitize|flashtile)\.log$' > /tmp/checks-extra.txt; [ -s /tmp/checks-extra.txt ] && tar czf checks-files.tgz -T /tmp/checks-extra.txt && xargs rm -f < /tmp/checks-extra.txt)
  ;;
correct)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  # The target's default pipeline (fused), an unfused one (--passes cse,dce), then the runtime's
  # other kernels, chosen through the select pass's preferences (the plan says which kernel runs).
  SEL="cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a"
  # LINGC_QUICK=1: the default pipeline only.
  VARIANTS=("" "--passes cse,dce" "--passes $SEL,prefer=expert:expert_loop,attention:attn_tiles}" "--passes $SEL,prefer=expert:expert_gemv,attention:attn_decode}" "--passes $SEL,prefer=expert:expert_loop,attention:attn_tiles,moe_dispatch:dispatch_scan,score-bytes=1920}")
  [ -n "${LINGC_QUICK:-}" ] && VARIANTS=("")
  for variant in "${VARIANTS[@]}"; do
    echo "== run (${variant:-default pipeline})"
    $L run $G --backend cuda $variant --input $G/golden.safetensors --out "$OUT/run.safetensors" && python3 bench/cuda/check_golden.py "$OUT/run.safetensors" $G/golden.safetensors
    echo "== generate (${variant:-default pipeline})"
    GOT=$($L generate $G --backend cuda $variant --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|')
    echo "got  $GOT"; echo "want $WANT"; [ "$GOT" = "$WANT" ] && echo "greedy_ids PASS" || echo "greedy_ids FAIL"
  done
  echo "== the README's toy model (examples/toy-mlp.ts, seeded random weights): cuda vs interp"
  if [ ! -d node_modules/esbuild ]; then
    echo "skipped: a model file is bundled with esbuild; carry node_modules/esbuild and node_modules/@esbuild to run it"
  else
    mkdir -p /tmp/toy
    $L init examples/toy-mlp.ts --seed 7 --weights /tmp/toy/model.safetensors --inputs /tmp/toy/input.safetensors --dims B=2,S=5
    for b in interp cuda; do $L run examples/toy-mlp.ts --weights /tmp/toy/model.safetensors --input /tmp/toy/input.safetensors --backend $b --out /tmp/toy/$b.safetensors; done
    python3 -c "
from safetensors.numpy import load_file
a, b = load_file('/tmp/toy/interp.safetensors')['y'], load_file('/tmp/toy/cuda.safetensors')['y']
d = float(abs(a.astype('float64') - b.astype('float64')).max()); print(f'toy y {a.shape}: max abs diff {d:.3e} ({\"PASS\" if d <= 1e-5 else \"FAIL\"} at 1e-5)')"
  fi
  echo "== generate, one sequence (decode rows <= experts/4: the expert GEMV's row grid)"
  GOT=$($L generate $G --backend cuda --prompt "${PROMPT%%;*}" --max-new-tokens 6)
  [ "$GOT" = "${WANT%%|*}" ] && echo "greedy_ids[0] PASS" || echo "greedy_ids[0] FAIL: $GOT"
  echo "== compare interp,cuda"
  $L compare $G --backends interp,cuda --input $G/golden.safetensors > "$OUT/compare.txt"; echo "exit $?"; tail -3 "$OUT/compare.txt"
  echo "== a checkpoint whose shapes do not match"
  rm -rf /tmp/bad && cp -r $G /tmp/bad && python3 -c "
from safetensors.numpy import load_file, save_file
t = load_file('/tmp/bad/model.safetensors'); t['model.layers.1.attention.dense.weight'] = t['model.layers.1.attention.dense.weight'][:, :32].copy(); save_file(t, '/tmp/bad/model.safetensors')"
  EXE=$(ls -d /tmp/lingc-cache/cuda/ling-tiny-*/lingc_model | head -1)
  "$EXE" run --checkpoint /tmp/bad --graph forward --input $G/golden.safetensors --out /tmp/bad-out.safetensors; echo "exit $?"
  echo "== a checkpoint with a NaN weight (refused as it is loaded, naming the tensor and the position)"
  rm -rf /tmp/nan && cp -r $G /tmp/nan && python3 -c "
from safetensors.numpy import load_file, save_file
t = load_file('/tmp/nan/model.safetensors'); w = t['model.layers.2.mlp.experts.5.up_proj.weight'].copy(); w[3, 7] = float('nan'); t['model.layers.2.mlp.experts.5.up_proj.weight'] = w; save_file(t, '/tmp/nan/model.safetensors')"
  "$EXE" run --checkpoint /tmp/nan --graph forward --input $G/golden.safetensors --out /tmp/nan-out.safetensors; echo "exit $?"
  echo "== a checkpoint of another configuration, same shapes (rope_theta): refused by the program itself (its recorded config)"
  rm -rf /tmp/theta && cp -r $G /tmp/theta && python3 -c "
import json; p = '/tmp/theta/config.json'; c = json.load(open(p)); c['rope_theta'] = 20000.0; json.dump(c, open(p, 'w'))"
  "$EXE" run --checkpoint /tmp/theta --graph forward --input $G/golden.safetensors --out /tmp/theta-out.safetensors; echo "exit $?"
  echo "== the bf16 attention kernels (fused prefill, decode) against a reference"
  "$EXE" selftest; echo "exit $?"
  echo "== the bf16 experts' tile program against the interpreter"
  experts_check
  ;;
selftest)
  # Each build's selftest: the runtime's kernels against references, then its tile programs against the op
  # table's direct forms of the same steps (random weights; prefill 1 x 333, decode at batch 1, 5, 40):
  # ling-tiny (fp32), ling-small (bf16), ling-small-fp8, Ling-mini; memcheck and racecheck on ling-small's.
  MODELS="$G tests/data/golden/ling-small tests/data/golden/ling-small-fp8 bench/cuda/ling-mini-2.0-no-mtp"
  for m in $MODELS; do
    D=/tmp/st-$(basename $m); ( $L compile $m --target cuda --out $D >/dev/null && cd $D && make -j16 >/dev/null ) &
  done
  wait
  for m in $MODELS; do
    echo "== $(basename $m) selftest"; /tmp/st-$(basename $m)/lingc_model selftest; echo "exit $?"
  done
  sanitized small-selftest /tmp/st-ling-small/lingc_model selftest
  ;;
wgmmawait)
  # The wgmma expert GEMM's wait for a stage's MMAs (LINGC_WGMMA_WAIT): late (after the next stage's
  # copies, barrier and loads: they overlap) or early (at once); bf16 and FP8 Ling-mini, selftest of the
  # late builds (the expert GEMMs against the op table's direct forms), then prefill alternately, two rounds.
  M=bench/cuda/ling-mini-2.0-no-mtp; F8="--quantize fp8 --activation-scheme dynamic --dtype bf16"
  for v in late early; do
    ( LINGC_WGMMA_WAIT=$v $L compile $M --target cuda --out /tmp/m-$v >/dev/null && cd /tmp/m-$v && make -j8 >/dev/null ) &
    ( LINGC_WGMMA_WAIT=$v $L compile $M --target cuda $F8 --out /tmp/m8-$v >/dev/null && cd /tmp/m8-$v && make -j8 >/dev/null ) &
  done
  wait
  for b in m-late m8-late; do echo "== $b selftest"; /tmp/$b/lingc_model selftest | grep -E "grouped_gemm|FAIL"; echo "exit ${PIPESTATUS[0]}"; done
  for round in 1 2; do
    for b in m-late m-early m8-late m8-early; do echo "== $b, round $round"; /tmp/$b/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode "" --repeats 5 | grep -o '"seq": [0-9]*, "ms": [0-9.]*'; done
  done
  ;;
fp8quick)
  # The FP8 build's checks that fit one short call: ling-small-fp8's selftest (its tile programs, the
  # wgmma expert GEMMs among them, against the op table's direct forms) under memcheck and racecheck,
  # its W8A8 logits' distance to the golden's, the experts module against the interpreter; then
  # Ling-mini FP8 against bf16 (lingc, this commit, random weights) on the benchmark's four rows.
  S=tests/data/golden/ling-small-fp8; M=bench/cuda/ling-mini-2.0-no-mtp
  $L compile $M --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j8 >/dev/null) &
  $L compile $M --target cuda --quantize fp8 --activation-scheme dynamic --dtype bf16 --out /tmp/mini8 >/dev/null && (cd /tmp/mini8 && make -j8 >/dev/null) &
  $L compile $S --target cuda --out /tmp/small8 >/dev/null && (cd /tmp/small8 && make -j8 >/dev/null) || exit 1
  echo "== ling-small-fp8 selftest"; /tmp/small8/lingc_model selftest | grep -E "^selftest step|FAIL"; echo "exit ${PIPESTATUS[0]}"
  sanitized small8-selftest /tmp/small8/lingc_model selftest
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  echo "== W8A8 logits against the golden's"
  /tmp/small8/lingc_model run --checkpoint $S --graph forward --input /tmp/ids8.safetensors --out /tmp/w8.safetensors && python3 bench/cuda/fp8_check.py logits /tmp/w8.safetensors w8a8
  mkdir -p /tmp/ex && python3 bench/cuda/fp8_check.py experts /tmp/ex
  $L run /tmp/ex/e.lir --weights $S --backend interp --input /tmp/ex/e.safetensors --out /tmp/ex/interp.safetensors >/dev/null
  echo "== the experts module against the interpreter"
  $L run /tmp/ex/e.lir --weights $S --backend cuda --input /tmp/ex/e.safetensors --out /tmp/ex/cuda.safetensors >/dev/null && python3 bench/cuda/fp8_check.py compare /tmp/ex/cuda.safetensors /tmp/ex/interp.safetensors 1e-3 $EXPERTS_Y
  wait
  for v in mini mini8; do
    echo "== lingc $v"
    /tmp/$v/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode 1x2048,32x2048 --repeats 3 | tee "$OUT/bench-$v.json" | grep -E '"(ms|graph_ms_per_step)"'
  done
  /tmp/mini8/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2>"$OUT/profile-mini8.txt" >/dev/null
  /tmp/mini8/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 1 --profile 2>"$OUT/profile-mini8-decode.txt" >/dev/null
  ;;
sanitize)
  EXE=$(ls -d /tmp/lingc-cache/cuda/ling-tiny-*/lingc_model | head -1)
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool: forward"
    compute-sanitizer --tool $tool --error-exitcode 9 $EXE run --checkpoint $G --graph forward --input $G/golden.safetensors --out /tmp/s.safetensors > "$OUT/san-$tool-fwd.txt" 2>&1; echo "exit $?"; grep -m3 -A3 "Invalid\|Race\|Hazard" "$OUT/san-$tool-fwd.txt"; tail -1 "$OUT/san-$tool-fwd.txt"
    echo "== compute-sanitizer --tool $tool: generate (decode graph)"
    compute-sanitizer --tool $tool --error-exitcode 9 $EXE generate --checkpoint $G --prompt "$PROMPT" --max-new-tokens 3 > "$OUT/san-$tool-gen.txt" 2>&1; echo "exit $?"; grep -m3 -A3 "Invalid\|Race\|Hazard" "$OUT/san-$tool-gen.txt"; tail -1 "$OUT/san-$tool-gen.txt"
  done
  ;;
bench)
  echo "== bf16 sanity: interp vs cuda on a small random bf16 checkpoint (bf16 rounding order differs, so a loose tolerance)"
  $L compare .gpu/bf16-small --backends interp,cuda --input .gpu/bf16-small/input.safetensors --tolerance 0.25 > "$OUT/compare-bf16.txt"; echo "exit $?"; tail -4 "$OUT/compare-bf16.txt"
  # Ling-mini-2.0's sizes without the MTP layer (as the chat checkpoint ships, and as the baseline runs).
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j16 >/dev/null) || exit 1
  /tmp/mini/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode 1x2048,32x2048 --repeats 10 | tee "$OUT/lingc-bench.json"
  [ -n "${LINGC_SKIP_BASELINE:-}" ] || PYTHONUNBUFFERED=1 python3 bench/cuda/torch_baseline.py --repeats 3 | tee "$OUT/torch-bench.json"
  ;;
accept14)
  # Issue 14's acceptance bars in one call, for the default build (mini: 13 launches a bf16 MoE layer
  # at batch 1, the fastest) and the phase-launch build (mini-ph: LINGC_PHASE_LAUNCH=${LINGC_PHASES:-on},
  # at most 6): LINGC_ACCEPT_PART=checks: ling-tiny's golden logits, greedy ids and greedy ids drafted
  # by its MTP layer on CUDA under both settings; under the phases setting, one sequence's 10 greedy
  # ids on ling-tiny and ling-small against the interpreter, that run on ling-small under memcheck and
  # racecheck, and mini-ph's selftest; the launches a decode step
  # of both builds and of the same model with 4 layers (1 dense + 3 MoE), whence the launches a MoE
  # layer exactly ((N20 - N4) / 16); mini-ph's stamped timeline (per-kernel times in the graph).
  # LINGC_ACCEPT_PART=rows: every row of both builds and of the strong PyTorch implementation, in
  # this call (lingc's bench prints the copy bandwidth and bf16 GEMM rate it measured). Default: both.
  PART=${LINGC_ACCEPT_PART:-all}; PH="LINGC_PHASE_LAUNCH=${LINGC_PHASES:-on}"; M=bench/cuda/ling-mini-2.0-no-mtp
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
  mkdir -p /tmp/mini4 && python3 -c "
import json; c = json.load(open('$M/config.json')); c['num_hidden_layers'] = 4; json.dump(c, open('/tmp/mini4/config.json', 'w'))"
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j6 >/dev/null ) &
  ( env $PH $L compile $M --target cuda --out /tmp/mini-ph >/dev/null && cd /tmp/mini-ph && make -j6 >/dev/null ) &
  if [ "$PART" != rows ]; then
    ( $L compile /tmp/mini4 --target cuda --out /tmp/mini4-as >/dev/null && cd /tmp/mini4-as && make -j2 >/dev/null ) &
    ( env $PH $L compile /tmp/mini4 --target cuda --out /tmp/mini4-ph >/dev/null && cd /tmp/mini4-ph && make -j2 >/dev/null ) &
    ( env $PH LINGC_STAMPS=on $L compile $M --target cuda --out /tmp/mini-ph-st >/dev/null && cd /tmp/mini-ph-st && make -j2 >/dev/null ) &
    for e in "LINGC_PHASE_LAUNCH=off" "$PH"; do
      echo "== ling-tiny golden under $e: run, generate, generate --draft mtp"
      env $e $L run $G --backend cuda --input $G/golden.safetensors --out "$OUT/run.safetensors" | tail -1 && python3 bench/cuda/check_golden.py "$OUT/run.safetensors" $G/golden.safetensors | tail -1
      for d in "" "--draft mtp"; do
        GOT=$(env $e $L generate $G --backend cuda $d --prompt "$PROMPT" --max-new-tokens 6 2>/dev/null | paste -sd'|')
        [ "$GOT" = "$WANT" ] && echo "greedy_ids ${d:-plain} PASS" || echo "greedy_ids ${d:-plain} FAIL: $GOT / $WANT"
      done
    done
    echo "== checks under $PH"
    one_sequence "$PH"
    wait
    echo "== mini-ph selftest"; timeout 150 /tmp/mini-ph/lingc_model selftest > "$OUT/selftest-ph.txt" 2>&1; echo "exit $?, $(grep -c PASS "$OUT/selftest-ph.txt") PASS, $(grep -c FAIL "$OUT/selftest-ph.txt") FAIL"
    launches() { LINGC_GRAPH_KERNELS=1 timeout 60 /tmp/$1/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 1 2>&1 | grep -o "graph decode captured: [0-9]* kernel launches" | head -1 | grep -o "[0-9]*"; }
    for b in as ph; do
      n20=$(launches mini$([ $b = ph ] && echo -ph)); n4=$(launches mini4-$b)
      echo "launches a decode step, batch 1 ($b): 20 layers $n20, 4 layers $n4: a MoE layer $(( (n20 - n4) / 16 )) (remainder $(( (n20 - n4) % 16 )))"
    done | tee "$OUT/launches.txt"
    LINGC_STAMPS_OUT=$OUT/stamps-ph timeout 120 /tmp/mini-ph-st/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 20 >/dev/null 2>&1
    python3 bench/cuda/stamps.py /tmp/mini-ph-st/model.cu $OUT/stamps-ph-b1.bin > "$OUT/stamps-ph.txt"; rm -f $OUT/stamps-ph-b1.bin; head -16 "$OUT/stamps-ph.txt"
  fi
  wait
  if [ "$PART" != checks ]; then
    for m in mini mini-ph; do
      echo "== $m rows"; /tmp/$m/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode 1x2048,32x2048 --repeats 10 > "$OUT/lingc-bench-$m.json"
    done
    PYTHONUNBUFFERED=1 python3 bench/cuda/torch_strong.py --prefill 1x2048,1x8192 --decode 1x2048,32x2048 --repeats 10 2>"$OUT/torch-strong.err" > "$OUT/torch-strong.json" || tail -30 "$OUT/torch-strong.err"
    python3 bench/cuda/accept14.py $M/config.json "$OUT/lingc-bench-mini.json" "$OUT/lingc-bench-mini-ph.json" "$OUT/torch-strong.json" | tee "$OUT/accept14.txt"
  fi
  # A device call returns at most 8 files: the logs packed into one.
  rm -f "$OUT/run.safetensors"
  (cd "$OUT" && tar czf accept14-logs.tgz --remove-files $(ls san-one-*.txt selftest-ph.txt launches.txt stamps-ph.txt torch-strong.err 2>/dev/null) 2>/dev/null)
  ;;
strong)
  # lingc against the strong PyTorch implementation (bench/cuda/torch_strong.py) and the eager one
  # (torch_baseline.py, skipped with LINGC_SKIP_EAGER=1), all in this call, Ling-mini-2.0 sizes
  # (LINGC_SKIP_CHECK=1 skips the strong baseline's check against the eager one).
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
  [ -n "${LINGC_SKIP_CHECK:-}" ] || PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore python3 bench/cuda/torch_strong.py --check 2>&1 | grep -v -i "warn" | tail -12
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j16 >/dev/null) || exit 1
  # LINGC_PREFILL / LINGC_DECODE: the rows (both sides; "" for none), default all four.
  PF=${LINGC_PREFILL-1x2048,1x8192}; DC=${LINGC_DECODE-1x2048,32x2048}
  # Prefill rows: the LM head on the last position on both sides (lingc's prefill graph, the baseline's
  # logits_to_keep=1); LINGC_ALL_LOGITS=1: on every position on both (lingc's forward graph).
  /tmp/mini/lingc_model bench --random-weights --prefill "$PF" --decode "$DC" --repeats 10 ${LINGC_ALL_LOGITS:+--graph forward} | tee "$OUT/lingc-bench.json"
  # LINGC_BASELINE_PREFILL_GRAPH=1: the baseline's prefill rows also as CUDA graphs (graph_ms beside ms).
  PYTHONUNBUFFERED=1 python3 bench/cuda/torch_strong.py --prefill "$PF" --decode "$DC" --repeats 10 ${LINGC_BASELINE_PREFILL_GRAPH:+--prefill-graph} ${LINGC_ALL_LOGITS:+--all-logits} 2>"$OUT/torch-strong.err" | tee "$OUT/torch-strong.json" || tail -30 "$OUT/torch-strong.err"
  [ -n "${LINGC_SKIP_EAGER:-}" ] || PYTHONUNBUFFERED=1 python3 bench/cuda/torch_baseline.py --repeats 3 | tee "$OUT/torch-eager.json"
  # LINGC_PROFILES=1: lingc's per-kernel times (events between launches) of each row, to $OUT/lingc-profile.txt.
  if [ -n "${LINGC_PROFILES:-}" ]; then
    for row in "--prefill 1x2048 --decode ''" "--prefill 1x8192 --decode ''" "--prefill '' --decode 1x2048" "--prefill '' --decode 32x2048"; do
      eval /tmp/mini/lingc_model bench --random-weights $row --repeats 2 --profile 2>&1 >/dev/null
    done > "$OUT/lingc-profile.txt"
  fi
  ;;
draft)
  # Speculative decoding in the CUDA program's own loop (--draft mtp): the golden ids with the
  # checkpoint's own MTP layer (random: every draft rejected, the cache rolled back each round), and
  # on a checkpoint whose MTP layer always agrees (bench/cuda/agreeing_draft.py: every draft
  # accepted) the interpreter's plain greedy ids; then memcheck and racecheck on the program.
  echo "== ling-tiny golden, --draft mtp"
  GOT=$($L generate $G --backend cuda --draft mtp --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|')
  echo "got  $GOT"; echo "want $WANT"; [ "$GOT" = "$WANT" ] && echo "greedy_ids PASS" || echo "greedy_ids FAIL"
  echo "== a checkpoint whose MTP layer always agrees: cuda --draft mtp against interp's plain greedy"
  python3 bench/cuda/agreeing_draft.py $G /tmp/agree
  PLAIN=$($L generate /tmp/agree --prompt "$PROMPT" --max-new-tokens 9 2>/dev/null | paste -sd'|')
  DRAFT=$($L generate /tmp/agree --backend cuda --draft mtp --prompt "$PROMPT" --max-new-tokens 9 | paste -sd'|')
  echo "cuda, drafted $DRAFT"; echo "interp, plain  $PLAIN"; [ -n "$PLAIN" ] && [ "$DRAFT" = "$PLAIN" ] && echo "agreeing draft PASS" || echo "agreeing draft FAIL"
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/ | head -1)lingc_model
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool: generate --draft mtp (accepting, then rejecting)"
    for ck in /tmp/agree $G; do
      compute-sanitizer --tool $tool --error-exitcode 9 $EXE generate --checkpoint $ck --prompt "$PROMPT" --max-new-tokens 7 --draft mtp > "$OUT/san-draft-$tool.txt" 2>&1; echo "exit $?"; tail -2 "$OUT/san-draft-$tool.txt"
    done
  done
  ;;
compare)
  # Two builds of the benchmark model side by side in one session (the CUDA source folders that two
  # commits' `lingc compile bench/cuda/ling-mini-2.0-no-mtp --target cuda` wrote, carried as
  # .gpu/mini-old and .gpu/mini-new), benchmarked alternately (old, new, old, new) so that the
  # machine's drift hits both; the JSON lines go to $OUT.
  for v in old new; do (cd .gpu/mini-$v && make -j16 >/dev/null 2>"$OUT/make-$v.txt" || cat "$OUT/make-$v.txt") & done; wait
  for round in 1 2; do
    for v in old new; do
      echo "== $v, round $round"
      .gpu/mini-$v/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode 1x2048,32x2048 --repeats 10 | tee "$OUT/bench-$v-$round.json"
    done
  done
  ;;
train)
  # ling-tiny's training step (the train graph: forward, loss, folded backward) on CUDA against upstream's
  # (train_golden.safetensors): losses within 1e-5 relative, gradients within 1e-4 of max |g|, counts identical;
  # then memcheck on it.
  echo "== run --graph train, cuda"
  $L run $G --graph train --backend cuda --input $G/golden.safetensors --out "$OUT/train.safetensors" && python3 bench/cuda/check_train.py "$OUT/train.safetensors" $G/train_golden.safetensors
  RC="cse,dce,recompute{budget=50%,at=B=2;S=12},fusion{profile=cuda-sm90a},select{profile=cuda-sm90a}"
  echo "== run --graph train, cuda, a recompute plan at 50% (the layer functions return what it keeps)"
  $L run $G --graph train --backend cuda --passes "$RC" --input $G/golden.safetensors --out "$OUT/train-rc.safetensors" && python3 bench/cuda/check_train.py "$OUT/train-rc.safetensors" $G/train_golden.safetensors | tail -2
  EXE=$(ls -td /tmp/lingc-cache/cuda/ling-tiny-*/lingc_model | head -1)
  echo "== the same build, every value allocated for the whole run (--eager-alloc)"
  $EXE run --checkpoint $G --graph train --input $G/golden.safetensors --out "$OUT/train-rc-eager.safetensors" --eager-alloc && python3 bench/cuda/check_train.py "$OUT/train-rc-eager.safetensors" $G/train_golden.safetensors | tail -2
  EXE=$(ls -td /tmp/lingc-cache/cuda/ling-tiny-*/lingc_model | head -1)
  compute-sanitizer --tool memcheck --error-exitcode 9 $EXE run --checkpoint $G --graph train --input $G/golden.safetensors --out /tmp/st.safetensors > "$OUT/san-train.txt" 2>&1; echo "memcheck exit $?"; grep -m3 -A3 "Invalid" "$OUT/san-train.txt"; tail -1 "$OUT/san-train.txt"
  ;;
trainmem)
  # A Ling-mini-2.0-shaped 4-layer model (bench/cuda/ling-mini-4l: 1 dense + 3 MoE layers + MTP, bf16,
  # random weights), its train graph at micro-batch 1, sequence 4096: no recompute (recompute{budget=none}),
  # full recompute (autodiff's default) and the recompute plan at 50%. For each: the predicted activation
  # memory (bench/train-memory.ts: storage from first write to last use over the folded program), then the
  # measured one (lingc_model trainbench: the stream pool's high-water mark over one step minus what was in
  # use before it and minus the outputs it holds after it) and the step time.
  M=bench/cuda/ling-mini-4l
  K="fusion{profile=cuda-sm90a},select{profile=cuda-sm90a}"
  declare -A P=([none]="cse,dce,recompute{budget=none},$K" [full]="cse,dce,$K" [plan50]="cse,dce,recompute{budget=50%},$K")
  for v in none full plan50; do
    (node dist/bench-train-memory.mjs --model $M --passes "${P[$v]}" > "$OUT/predict-$v.json" && $L compile $M --graph train --target cuda --passes "${P[$v]}" --out /tmp/tm-$v >/dev/null && cd /tmp/tm-$v && make -j6 >/dev/null 2>"$OUT/make-$v.txt" || tail -5 "$OUT/make-$v.txt") &
  done
  wait
  for v in none full plan50; do
    echo "== $v: ${P[$v]}"
    cat "$OUT/predict-$v.json"
    timeout 200 /tmp/tm-$v/lingc_model trainbench --random-weights --shape 1x4096 --repeats ${TRAIN_REPEATS:-1} | tee "$OUT/measured-$v.json"
  done
  ;;
stages)
  # Pipeline stages as processes, one per GPU, activations over NCCL (the nvidia-h200-x2 machine):
  # ling-tiny 1 vs 2 stages (bitwise, and the golden logits), generate --stages 2 (greedy ids), memcheck
  # on both stage programs (API errors not reported: NCCL's setup probes kernels this GPU has no image
  # for, by design); a Ling-mini-2.0-shaped bf16 model (random weights) 1 stage vs 2 stages
  # started by torchrun through launch.sh (bitwise). NVLink multicast stays off, as the machine requires.
  # LINGC_TINY_ONLY=1 stops after the ling-tiny run and generate checks.
  export NCCL_NVLS_ENABLE=0
  nvidia-smi -L
  $L run $G --backend cuda --input $G/golden.safetensors --out "$OUT/st1.safetensors" || exit 1
  echo "== run --stages 2"
  $L run $G --backend cuda --stages 2 --input $G/golden.safetensors --out "$OUT/st2.safetensors" && python3 bench/cuda/check_golden.py "$OUT/st2.safetensors" $G/golden.safetensors | tail -1
  python3 bench/cuda/same_outputs.py "$OUT/st1.safetensors" "$OUT/st2.safetensors"
  for n in 1 2; do
    echo "== generate --stages $n"
    GOT=$($L generate $G --backend cuda --stages $n --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|')
    [ "$GOT" = "$WANT" ] && echo "greedy_ids PASS" || echo "greedy_ids FAIL: $GOT"
  done
  [ -n "${LINGC_TINY_ONLY:-}" ] && exit 0
  echo "== chunked prefill: a forward of 5 tokens, then the decode graph over the other 7 (1 stage, then 2 stages)"
  python3 bench/cuda/check_chunked.py first $G/golden.safetensors 5 /tmp/c1.safetensors
  for n in 1 2; do
    $L run $G --backend cuda --stages $n --input /tmp/c1.safetensors --out /tmp/c1o.safetensors >/dev/null && python3 bench/cuda/check_chunked.py rest $G/golden.safetensors 5 /tmp/c1o.safetensors /tmp/c2.safetensors
    $L run $G --backend cuda --stages $n --graph decode --input /tmp/c2.safetensors --out /tmp/c2o.safetensors >/dev/null && python3 bench/cuda/check_chunked.py compare $G/golden.safetensors 5 /tmp/c2o.safetensors
  done
  echo "== memcheck, both stages of the forward"
  D=$(dirname "$(ls -td /tmp/lingc-cache/cuda/ling-tiny-*/lingc_stage1 | head -1)")
  for k in 0 1; do
    RANK=$k LOCAL_RANK=$k WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29611 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/lingc_stage$k run --checkpoint $G --graph forward --input $G/golden.safetensors --out /tmp/san-st.safetensors > "$OUT/san-stage$k.txt" 2>&1 &
  done
  wait; for k in 0 1; do echo "stage $k: $(tail -1 "$OUT/san-stage$k.txt")"; done
  echo "== Ling-mini-2.0-shaped, bf16, random weights: 1 stage vs 2 stages (torchrun)"
  MINI=bench/cuda/ling-mini-2.0-no-mtp
  ($L compile $MINI --target cuda --out /tmp/m1 >/dev/null && make -C /tmp/m1 -j16 >/dev/null) &
  ($L compile $MINI --target cuda --stages 2 --out /tmp/m2 >/dev/null && make -C /tmp/m2 -j16 >/dev/null) &
  wait
  python3 -c "
import numpy as np; from safetensors.numpy import save_file
save_file({'input_ids': np.random.default_rng(5).integers(0, 157184, size=(1, 1024)).astype(np.int64)}, '/tmp/ids.safetensors')"
  /tmp/m1/lingc_model run --random-weights --graph forward --input /tmp/ids.safetensors --out /tmp/m1.safetensors || exit 1
  (cd /tmp/m2 && torchrun --nproc-per-node 2 --no-python ./launch.sh run --random-weights --graph forward --input /tmp/ids.safetensors --out /tmp/m2.safetensors) > "$OUT/torchrun.txt" 2>&1; echo "torchrun exit $?"; tail -3 "$OUT/torchrun.txt"
  python3 bench/cuda/same_outputs.py /tmp/m1.safetensors /tmp/m2.safetensors
  ;;
chunkprofile)
  # Where a chunk of prefill spends its time: Ling-mini-shaped, 1 stage, 1x8192 whole and in 8 chunks, --profile.
  MINI=bench/cuda/ling-mini-2.0-no-mtp
  $L compile $MINI --target cuda --out /tmp/m1 >/dev/null && make -C /tmp/m1 -j16 >/dev/null || exit 1
  /tmp/m1/lingc_model bench --random-weights --prefill 1x8192 --chunks 8 --decode 1x16 --repeats 3 --profile 2> "$OUT/chunk-profile.txt"
  ;;
pipebench)
  # The 2-stage pipeline's speed (nvidia-h200-x2): Ling-mini-2.0-shaped bf16, prefill 1x8192 whole and
  # in 8 chunks in flight, decode; the 1-stage program on one GPU beside it; then a Ling-flash-2.0-shaped
  # bf16 model (random weights generated on the GPUs, about 206 GB) across the two GPUs.
  export NCCL_NVLS_ENABLE=0
  MINI=bench/cuda/ling-mini-2.0-no-mtp
  ($L compile $MINI --target cuda --stages 2 --out /tmp/m2 >/dev/null && make -C /tmp/m2 -j16 >/dev/null) &
  ($L compile $MINI --target cuda --out /tmp/m1 >/dev/null && make -C /tmp/m1 -j16 >/dev/null) &
  wait
  ($L compile ling-flash-2.0 --target cuda --stages 2 --out /tmp/f2 >/dev/null && make -C /tmp/f2 -j16 >/dev/null) &
  echo "== Ling-mini-shaped, 1 stage (one GPU)"
  /tmp/m1/lingc_model bench --random-weights --prefill 1x8192 --chunks 2,4,8 --decode 1x2048,8x2048 --repeats 5 | tee "$OUT/mini-1stage.json"
  echo "== Ling-mini-shaped, 2 stages"
  (cd /tmp/m2 && torchrun --nproc-per-node 2 --no-python ./launch.sh bench --random-weights --prefill 1x8192 --chunks 2,4,8 --decode 1x2048,8x2048 --repeats 5) 2>&1 | tee "$OUT/mini-2stage.json"
  wait
  echo "== Ling-flash-2.0-shaped, 2 stages"
  (cd /tmp/f2 && torchrun --nproc-per-node 2 --no-python ./launch.sh bench --random-weights --prefill 1x4096 --chunks 2,8 --decode 1x4096,8x4096 --repeats 3) 2>&1 | tee "$OUT/flash-2stage.json"
  nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv
  ;;
wide)
  # The 64-bit index path (kir Kernel.wide, used where a buffer passes 2^31 elements: Ling-1T's expert
  # stacks) rendered into every generated kernel (LINGC_CUDA_WIDE_INDEX=all) and checked on the small
  # golden models: ling-tiny's logits, ling-small-fp8 W8A16 and W8A8 logits, the FP8 expert tile program
  # and by-row GEMV against the interpreter.
  export LINGC_CUDA_WIDE_INDEX=all LINGC_CACHE_DIR=/tmp/wide-cache
  S=tests/data/golden/ling-small-fp8
  $L run $G --backend cuda --input $G/golden.safetensors --out /tmp/wt.safetensors && python3 bench/cuda/check_golden.py /tmp/wt.safetensors $G/golden.safetensors | tail -1
  grep -c "const long long lid" $(ls -td /tmp/wide-cache/cuda/ling-tiny-*/model.cu | head -1)
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  $L run $S --activation-scheme none --backend cuda --input /tmp/ids8.safetensors --out /tmp/w16.safetensors && python3 bench/cuda/fp8_check.py logits /tmp/w16.safetensors w8a16
  $L run $S --backend cuda --input /tmp/ids8.safetensors --out /tmp/w8.safetensors && python3 bench/cuda/fp8_check.py logits /tmp/w8.safetensors w8a8
  mkdir -p /tmp/ex && python3 bench/cuda/fp8_check.py experts /tmp/ex
  $L run /tmp/ex/e.lir --weights $S --backend interp --input /tmp/ex/e.safetensors --out /tmp/ex/interp.safetensors
  $L run /tmp/ex/e.lir --weights $S --backend cuda --input /tmp/ex/e.safetensors --out /tmp/ex/cuda.safetensors && python3 bench/cuda/fp8_check.py compare /tmp/ex/cuda.safetensors /tmp/ex/interp.safetensors 1e-3 $EXPERTS_Y
  $L run /tmp/ex/e.lir --weights $S --backend cuda --passes "cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a,prefer=fp8_expert:grouped_gemv_fp8}" --input /tmp/ex/e.safetensors --out /tmp/ex/gemv.safetensors && python3 bench/cuda/fp8_check.py compare /tmp/ex/gemv.safetensors /tmp/ex/interp.safetensors 1e-5
  ;;
ling1t)
  # Issue 13's code path at a size two H200s hold: Ling-1T's layer shapes with 4 layers (1 dense, 3 MoE)
  # and its MTP layer (bench/cuda/ling-1t-fp8-4l: the built-in config with a quantization_config), FP8
  # weights as the fp8 pass lays them out (random codes and scales generated on the GPUs; the expert
  # stacks have 4.3G elements: their kernels index 64-bit), bf16 activations. 1 stage on one GPU vs
  # $STAGES stages over NCCL (bitwise), then the speed and memory of both. The full run on nvidia-h200-x8
  # changes only the size: LING1T_CONFIG=bench/cuda/ling-1t-fp8 STAGES=8 ONE_STAGE=no (it fits no one GPU).
  export NCCL_NVLS_ENABLE=0
  M=${LING1T_CONFIG:-bench/cuda/ling-1t-fp8-4l}; N=${STAGES:-2}; ONE=${ONE_STAGE:-yes}
  [ "$ONE" = yes ] && ($L compile $M --target cuda --dtype bf16 --out /tmp/t1 >/dev/null && make -C /tmp/t1 -j16 >/dev/null && echo "built 1 stage") &
  ($L compile $M --target cuda --dtype bf16 --stages $N --out /tmp/tn >/dev/null && make -C /tmp/tn -j$(nproc) >/dev/null && echo "built $N stages") &
  wait
  nvidia-smi -L
  python3 -c "
import numpy as np; from safetensors.numpy import save_file
save_file({'input_ids': np.random.default_rng(7).integers(0, 157184, size=(1, 512)).astype(np.int64)}, '/tmp/ids1t.safetensors')"
  (cd /tmp/tn && torchrun --nproc-per-node $N --no-python ./launch.sh run --random-weights --graph forward --input /tmp/ids1t.safetensors --out /tmp/tn.safetensors) > "$OUT/torchrun-1t.txt" 2>&1; echo "torchrun exit $?"; tail -2 "$OUT/torchrun-1t.txt"
  if [ "$ONE" = yes ]; then
    /tmp/t1/lingc_model run --random-weights --graph forward --input /tmp/ids1t.safetensors --out /tmp/t1.safetensors || exit 1
    python3 bench/cuda/same_outputs.py /tmp/t1.safetensors /tmp/tn.safetensors
    echo "== 1 stage (one GPU)"
    /tmp/t1/lingc_model bench --random-weights --prefill 1x4096 --decode 1x4096,8x4096 --repeats 3 | tee "$OUT/ling1t-1stage.json"
  fi
  echo "== $N stages"
  (cd /tmp/tn && torchrun --nproc-per-node $N --no-python ./launch.sh bench --random-weights --prefill 1x4096 --chunks 2 --decode 1x4096,8x4096 --repeats 3) 2>&1 | grep -v "^W1\|OMP_NUM\|\*\*\*\*" | tee "$OUT/ling1t-${N}stage.json"
  ;;
fp8gather)
  # --fp8-gather before (CUDA's default) against after: ling-small-fp8's W8A8 forward of the golden's
  # ids with each, bit for bit (the same codes; CPU backends: tests/fp8/gather.test.ts); its selftest
  # and sanitizers with before; then fp8ab's rows of Ling-mini with after (mini8-env0) against the
  # default and bf16, with the quantize and expert kernels' 1x8192 times.
  S=tests/data/golden/ling-small-fp8; python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  for g in after before; do $L run $S --backend cuda --fp8-gather $g --input /tmp/ids8.safetensors --out /tmp/g-$g.safetensors >/dev/null || echo "run --fp8-gather $g failed"; done
  echo "== forward, --fp8-gather after against before"; python3 bench/cuda/same_outputs.py /tmp/g-after.safetensors /tmp/g-before.safetensors
  ( $L compile $S --target cuda --fp8-gather before --out /tmp/small8-g >/dev/null && cd /tmp/small8-g && make -j16 >/dev/null ) || exit 1
  echo "== selftest with it"; timeout 200 /tmp/small8-g/lingc_model selftest > "$OUT/selftest-gather.txt" 2>&1; echo "exit $?"; grep -E "FAIL|grouped_gemm_fp8|grouped_gemv_fp8" "$OUT/selftest-gather.txt" | head -6
  sanitized small8-g /tmp/small8-g/lingc_model run --checkpoint $S --graph forward --input /tmp/ids8.safetensors --out /tmp/w8-g.safetensors
  LINGC_ENVS=- LINGC_AB_FP8_FLAGS="--fp8-gather after" LINGC_AB_PREFILL_GREP="${LINGC_AB_PREFILL_GREP:-quantize|swiglu|grouped_linear}" bash "$0" fp8ab
  ;;
fp8pairs)
  # FP8's launch pairs (on by default in functions with fp8 steps; LINGC_PAIR_LAUNCH=off: none) on the
  # GPU, kept short: bench/cuda/ling-qp's W8A8 forward on 4 tokens (where the pairs run) with and
  # without, bit for bit; then FP8 Ling-mini's decode rows (batch 1 and 32) with and without, two rounds.
  D=/tmp/qp; Q="--quantize fp8 --activation-scheme dynamic"; M=bench/cuda/ling-mini-2.0-no-mtp
  rm -rf $D && mkdir -p $D && cp bench/cuda/ling-qp/config.json $D/ && $L init $D --weights $D/model.safetensors --inputs $D/ids.safetensors --graph forward --dims B=1,S=4 >/dev/null || exit 1
  ( $L compile $M --target cuda $Q --dtype bf16 --out /tmp/mini8 >/dev/null && cd /tmp/mini8 && make -j8 >/dev/null ) &
  ( LINGC_PAIR_LAUNCH=off $L compile $M --target cuda $Q --dtype bf16 --out /tmp/mini8-unpaired >/dev/null && cd /tmp/mini8-unpaired && make -j8 >/dev/null ) &
  for v in off on; do LINGC_PAIR_LAUNCH=$v $L run $D $Q --backend cuda --input $D/ids.safetensors --out $D/$v.safetensors >/dev/null || echo "run with LINGC_PAIR_LAUNCH=$v failed"; done
  echo "== ling-qp forward, pairs off against on"; python3 bench/cuda/same_outputs.py $D/off.safetensors $D/on.safetensors
  # LINGC_PAIRS_SANITIZE=1: also memcheck and racecheck on ling-qp's paired program (its forward on 4
  # tokens, where its FP8 pairs run; a whole Ling-mini decode under racecheck outlasts a device call).
  if [ -n "${LINGC_PAIRS_SANITIZE:-}" ]; then
    EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)  # the last one built: with the pairs
    echo "launch pairs in it: $(grep -c 'c.launch[a-z_]*(k_[a-z_0-9]*_pair_' "$(dirname $EXE)/model.cu")"
    sanitized qp-pairs $EXE run --checkpoint $D --graph forward --input $D/ids.safetensors --out /tmp/qp-s.safetensors
  fi
  wait
  alternate "" 1x2048,32x2048 mini8-unpaired mini8
  ;;
fp8epilogue)
  # The routed SwiGLU experts' tile program with the hidden rows' quantize as its epilogue
  # (backends/cuda/quant-epilogue.ts; LINGC_QUANT_EPILOGUE=on, off by default: the quantize its own launch):
  # bench/cuda/ling-qp in bf16, W8A8, forward on 64 tokens (512 expert rows: the tile program) with
  # and without, bit for bit; memcheck and racecheck on the program with it; then FP8 Ling-mini's
  # prefill rows without and with, two rounds, and each one's 1x8192 profile lines of the SwiGLU
  # experts and the quantizes.
  D=/tmp/qp; Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"; M=bench/cuda/ling-mini-2.0-no-mtp
  rm -rf $D && mkdir -p $D && cp bench/cuda/ling-qp/config.json $D/ && $L init $D --weights $D/model.safetensors --inputs $D/ids.safetensors --graph forward --dims B=1,S=64 >/dev/null || exit 1
  ( LINGC_QUANT_EPILOGUE=on $L compile $M --target cuda $Q --out /tmp/mini8-epilogue >/dev/null && cd /tmp/mini8-epilogue && make -j8 >/dev/null ) &
  ( LINGC_QUANT_EPILOGUE=off $L compile $M --target cuda $Q --out /tmp/mini8-apart >/dev/null && cd /tmp/mini8-apart && make -j8 >/dev/null ) &
  for v in off on; do LINGC_QUANT_EPILOGUE=$v $L run $D $Q --backend cuda --input $D/ids.safetensors --out $D/$v.safetensors >/dev/null || echo "run with LINGC_QUANT_EPILOGUE=$v failed"; done
  echo "== ling-qp forward, epilogue off against on"; python3 bench/cuda/same_outputs.py $D/off.safetensors $D/on.safetensors
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)  # the last one built: with the epilogue
  grep -c "qe[0-9]*_ = " "$(dirname $EXE)/model.cu"
  sanitized qp-epilogue $EXE run --checkpoint $D --graph forward --input $D/ids.safetensors --out /tmp/qp-s.safetensors
  wait
  alternate 1x2048,1x8192 "" mini8-apart mini8-epilogue
  for m in mini8-apart mini8-epilogue; do
    timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2> "$OUT/profile-$m-prefill.txt" >/dev/null
    echo "== $m prefill 1x8192 profile: $(head -1 "$OUT/profile-$m-prefill.txt")"; grep -E "swiglu|quantize|grouped_linear" "$OUT/profile-$m-prefill.txt" | head -8
  done
  ;;
attnepilogue)
  # Prefill attention's program with the FP8 output projection input's quantize as its epilogue
  # (backends/cuda/quant-epilogue.ts; LINGC_ATTN_QUANT_EPILOGUE=prefill, the default): bench/cuda/ling-qp
  # in bf16, W8A8, forward on 64 tokens (flash_wgmma) without and with, bit for bit; memcheck and
  # racecheck on the forward with it; then fp8ab with the epilogue off as mini8-env0 (LINGC_ENVS),
  # the 1x8192 profile's attention and quantize lines.
  D=/tmp/qp; Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"
  rm -rf $D && mkdir -p $D && cp bench/cuda/ling-qp/config.json $D/ && $L init $D --weights $D/model.safetensors --inputs $D/ids.safetensors --graph forward --dims B=1,S=64 >/dev/null || exit 1
  for v in off prefill; do LINGC_ATTN_QUANT_EPILOGUE=$v $L run $D $Q --backend cuda --input $D/ids.safetensors --out $D/$v.safetensors >/dev/null || echo "run with LINGC_ATTN_QUANT_EPILOGUE=$v failed"; done
  echo "== ling-qp forward, attention epilogue off against on"; python3 bench/cuda/same_outputs.py $D/off.safetensors $D/prefill.safetensors
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)  # the last one built: with the epilogue
  echo "epilogue flags: $(grep -c "qe[0-9]*_ = " "$(dirname $EXE)/model.cu")"
  sanitized attn-epilogue $EXE run --checkpoint $D --graph forward --input $D/ids.safetensors --out /tmp/qp-s.safetensors
  # The same without it (cuBLASLt's own nvjet kernels report racecheck hazards either way), built
  # in a cache of its own (the shared cache would hand back the build above or the first run's).
  rm -rf /tmp/lingc-cache-off
  LINGC_CACHE_DIR=/tmp/lingc-cache-off LINGC_ATTN_QUANT_EPILOGUE=off $L run $D $Q --backend cuda --input $D/ids.safetensors --out /tmp/qp-off2.safetensors >/dev/null
  EXE=$(ls -td /tmp/lingc-cache-off/cuda/*/lingc_model | head -1)
  echo "epilogue flags without: $(grep -c "qe[0-9]*_ = " "$(dirname $EXE)/model.cu")"
  sanitized attn-apart $EXE run --checkpoint $D --graph forward --input $D/ids.safetensors --out /tmp/qp-s.safetensors
  # LINGC_AE_AB=0: the checks only.
  [ "${LINGC_AE_AB:-1}" = 0 ] && exit 0
  LINGC_ENVS="LINGC_ATTN_QUANT_EPILOGUE=off" LINGC_AB_PREFILL_GREP="${LINGC_AB_PREFILL_GREP:-attention|quantize}" LINGC_PROFILE_LINES=${LINGC_PROFILE_LINES:-0} bash "$0" fp8ab
  ;;
fp8proj)
  # Only fp8's per-projection W8A8 checks (fp8_projections).
  fp8_projections
  ;;
fp8)
  # FP8 on CUDA against tests/data/golden/ling-small-fp8 (bench/cuda/fp8_check.py): weight-only from the FP8
  # checkpoint and from the bf16 one quantized at load (logits within 1e-4, greedy ids exact), the default
  # W8A8 path (distance reported), the three W8A8 projections (q and s bit-exact, y within 1e-5), memcheck.
  S=tests/data/golden/ling-small-fp8; Q=tests/data/golden/ling-small; GF=$S/golden.safetensors
  P8=$(python3 bench/cuda/fp8_check.py ids prompt); W8=$(python3 bench/cuda/fp8_check.py ids want)
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  for src in "$S --activation-scheme none" "$Q --quantize fp8 --activation-scheme none"; do
    echo "== run $src"
    $L run $src --backend cuda --input /tmp/ids8.safetensors --out "$OUT/fp8.safetensors" && python3 bench/cuda/fp8_check.py logits "$OUT/fp8.safetensors" w8a16
    echo "== generate $src"
    GOT=$($L generate $src --backend cuda --prompt "$P8" --max-new-tokens 6 | paste -sd'|')
    echo "got  $GOT"; echo "want $W8"; [ "$GOT" = "$W8" ] && echo "greedy_ids_w8a16 PASS" || echo "greedy_ids_w8a16 FAIL"
  done
  echo "== W8A8, the checkpoint's dynamic scheme"
  $L run $S --backend cuda --input /tmp/ids8.safetensors --out "$OUT/w8a8.safetensors" && python3 bench/cuda/fp8_check.py logits "$OUT/w8a8.safetensors" w8a8
  fp8_projections
  echo "== cuBLASLt's block-scaled FP8 GEMM against a dequantize-and-sum reference (the scale layouts gemm_fp8 uses)"
  nvcc -O2 -std=c++17 -arch=sm_90a bench/cuda/fp8_gemm.cu -I$CUDA_LT/../include -L$CUDA_LT -lcublasLt -Xlinker -rpath=$CUDA_LT -o /tmp/fp8_gemm 2>&1 | grep error; /tmp/fp8_gemm check
  echo "== compute-sanitizer memcheck and racecheck: W8A8 forward"
  EXE=$(ls -td /tmp/lingc-cache/cuda/ling-small-fp8-*/lingc_model | head -1)
  sanitized fp8 $EXE run --checkpoint $S --graph forward --input /tmp/ids8.safetensors --out /tmp/s8.safetensors
  ;;
fp8experts)
  # The routed experts' FP8 tile program (backends/kernels/gen/grouped-gemm.ts) against the interpreter on
  # ling-small-fp8's layer-1 experts (W8A8: SwiGLU then down, rows spread unevenly, empty experts and
  # several tiles per expert), then memcheck and racecheck on it, then the W8A8 forward end to end.
  S=tests/data/golden/ling-small-fp8
  mkdir -p /tmp/ex && python3 bench/cuda/fp8_check.py experts /tmp/ex
  for b in interp cuda; do $L run /tmp/ex/e.lir --weights $S --backend $b --input /tmp/ex/e.safetensors --out /tmp/ex/$b.safetensors || echo "run $b failed"; done
  # FP8 tensor-core sums are about 1e-4 of max |y| from exact ones (the fp8 results file), so 1e-3 as for gemm_fp8.
  python3 bench/cuda/fp8_check.py compare /tmp/ex/cuda.safetensors /tmp/ex/interp.safetensors 1e-3 $EXPERTS_Y
  echo "== the same experts on the by-row GEMV (decode's kernel), forced"
  $L run /tmp/ex/e.lir --weights $S --backend cuda --passes "cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a,prefer=fp8_expert:grouped_gemv_fp8}" --input /tmp/ex/e.safetensors --out /tmp/ex/gemv.safetensors && python3 bench/cuda/fp8_check.py compare /tmp/ex/gemv.safetensors /tmp/ex/interp.safetensors 1e-5
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)
  sanitized experts $EXE run --checkpoint $S --graph e --input /tmp/ex/e.safetensors --out /tmp/ex/san.safetensors
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  echo "== W8A8 forward, ling-small-fp8"
  $L run $S --backend cuda --input /tmp/ids8.safetensors --out "$OUT/w8a8.safetensors" && python3 bench/cuda/fp8_check.py logits "$OUT/w8a8.safetensors" w8a8
  ;;
fp8other)
  # FP8 on a checkpoint of other sizes than the golden ones (6 heads over 3 KV heads, 12 experts of
  # 192 with top-3 over 3 groups, 2 shared experts, 2 dense layers, rotary 0.25, hidden 384): seeded
  # random weights, quantized by lingc quantize, then cuda against interp (W8A16: within 1e-4; W8A8:
  # reported) and greedy generation (W8A16: the same ids).
  D=/tmp/oth; mkdir -p $D/bf16
  python3 -c "
import json
c = json.load(open('tests/data/golden/ling-small/config.json'))
c.update({'vocab_size': 768, 'hidden_size': 384, 'intermediate_size': 576, 'num_hidden_layers': 4, 'num_attention_heads': 6, 'num_key_value_heads': 3, 'partial_rotary_factor': 0.25, 'num_experts': 12, 'num_shared_experts': 2, 'num_experts_per_tok': 3, 'n_group': 3, 'topk_group': 2, 'moe_intermediate_size': 192, 'first_k_dense_replace': 2, 'torch_dtype': 'float32'})
json.dump(c, open('$D/bf16/config.json', 'w'))"
  $L init $D/bf16 --weights $D/bf16/model.safetensors --seed 3 --inputs $D/in.safetensors --dims B=2,S=24 >/dev/null && $L quantize $D/bf16 --out $D/fp8 >/dev/null || exit 1
  echo "== W8A16 (weight-only): cuda vs interp"
  $L compare $D/fp8 --backends interp,cuda --activation-scheme none --input $D/in.safetensors | tail -3
  echo "== W8A8 (dynamic): cuda vs interp (reported: a rounding midpoint can flip)"
  $L compare $D/fp8 --backends interp,cuda --input $D/in.safetensors --tolerance 1e9 | grep -E "^(logits|mtp_logits) "
  echo "== W8A8 on cuda, --fp8-gather after against before (CUDA's default): bit for bit"
  for g in after before; do $L run $D/fp8 --backend cuda --fp8-gather $g --input $D/in.safetensors --out $D/g-$g.safetensors >/dev/null || echo "run --fp8-gather $g failed"; done
  python3 bench/cuda/same_outputs.py $D/g-after.safetensors $D/g-before.safetensors
  echo "== greedy, W8A16, interp and cuda"
  P=$(python3 -c "
from safetensors.numpy import load_file
ids = load_file('$D/in.safetensors')['input_ids']; print(';'.join(','.join(str(int(x)) for x in r) for r in ids))")
  A=$($L generate $D/fp8 --activation-scheme none --backend interp --prompt "$P" --max-new-tokens 5 | paste -sd'|'); B=$($L generate $D/fp8 --activation-scheme none --backend cuda --prompt "$P" --max-new-tokens 5 | paste -sd'|')
  echo "interp $A"; echo "cuda   $B"; [ "$A" = "$B" ] && echo "greedy PASS" || echo "greedy FAIL"
  ;;
unseen)
  # A Ling 2.0 checkpoint of sizes no test data has (hidden 384, 6 heads over 2 KV heads of 64,
  # rotary 0.25, 16 experts of 192 with top-4 over 4 groups keeping 2, 2 shared experts, 2 dense
  # layers of 320, MTP; bf16), seeded random weights: cuda against interp in f32 (every value within
  # 1e-4) and in bf16 (reported), greedy ids in f32; then lingc quantize and FP8 weight-only (W8A16,
  # f32: within 1e-4) and W8A8 (reported: a rounding midpoint can flip), and W8A16 greedy ids.
  D=/tmp/unseen; rm -rf $D; mkdir -p $D/bf16
  echo '{"model_type": "bailing_moe", "architectures": ["BailingMoeV2ForCausalLM"], "vocab_size": 512, "hidden_size": 384, "intermediate_size": 320, "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000, "partial_rotary_factor": 0.25, "num_experts": 16, "num_experts_per_tok": 4, "num_shared_experts": 2, "n_group": 4, "topk_group": 2, "moe_intermediate_size": 192, "first_k_dense_replace": 2, "num_nextn_predict_layers": 1, "routed_scaling_factor": 2.5, "torch_dtype": "bfloat16", "max_position_embeddings": 4096, "use_qk_norm": true, "score_function": "sigmoid", "moe_router_enable_expert_bias": true}' > $D/bf16/config.json
  $L init $D/bf16 --weights $D/bf16/model.safetensors --seed 5 --inputs $D/in.safetensors --dims B=2,S=7 >/dev/null && $L quantize $D/bf16 --out $D/fp8 >/dev/null || exit 1
  echo "== bf16 checkpoint in f32: cuda vs interp"; $L compare $D/bf16 --backends interp,cuda --dtype f32 --input $D/in.safetensors | tail -2
  echo "== bf16 checkpoint in bf16: cuda vs interp (reported)"; $L compare $D/bf16 --backends interp,cuda --input $D/in.safetensors --tolerance 1e9 | grep -E "^(logits|mtp_logits) "
  P="1,2,3,4,5,6,7;9,8,7,6,5,4,3"
  A=$($L generate $D/bf16 --dtype f32 --backend interp --prompt "$P" --max-new-tokens 6 --ignore-eos | paste -sd'|'); B=$($L generate $D/bf16 --dtype f32 --backend cuda --prompt "$P" --max-new-tokens 6 --ignore-eos | paste -sd'|')
  echo "interp $A"; echo "cuda   $B"; [ "$A" = "$B" ] && echo "greedy f32 PASS" || echo "greedy f32 FAIL"
  echo "== FP8 W8A16 in f32: cuda vs interp"; $L compare $D/fp8 --backends interp,cuda --activation-scheme none --input $D/in.safetensors | tail -2
  echo "== FP8 W8A8: cuda vs interp (reported)"; $L compare $D/fp8 --backends interp,cuda --input $D/in.safetensors --tolerance 1e9 | grep -E "^(logits|mtp_logits) "
  A=$($L generate $D/fp8 --activation-scheme none --backend interp --prompt "$P" --max-new-tokens 6 --ignore-eos | paste -sd'|'); B=$($L generate $D/fp8 --activation-scheme none --backend cuda --prompt "$P" --max-new-tokens 6 --ignore-eos | paste -sd'|')
  echo "interp $A"; echo "cuda   $B"; [ "$A" = "$B" ] && echo "greedy W8A16 PASS" || echo "greedy W8A16 FAIL"
  ;;
fp8tiles)
  # The grouped FP8 GEMM's tile shapes (LINGC_FP8_TILE=bm,bn,wm,wn,stages; the CUDA profile (ir/target/cuda.ts) keeps
  # the fastest as its default): each checked against the interpreter on the experts module, then timed
  # in the Ling-mini-2.0 FP8 prefill 1x8192 profile (SwiGLU experts and the down projection, per layer).
  S=tests/data/golden/ling-small-fp8; M=bench/cuda/ling-mini-2.0-no-mtp
  TILES=${LINGC_FP8_TILES:-64,128,64,32,3 64,128,64,32,2 128,128,64,32,2 64,128,32,64,3 64,64,32,32,3}
  mkdir -p /tmp/ex && python3 bench/cuda/fp8_check.py experts /tmp/ex
  $L run /tmp/ex/e.lir --weights $S --backend interp --input /tmp/ex/e.safetensors --out /tmp/ex/interp.safetensors >/dev/null
  for cfg in $TILES; do
    d=/tmp/tile-${cfg//,/-}
    (LINGC_FP8_TILE=$cfg $L compile $M --target cuda --quantize fp8 --activation-scheme dynamic --dtype bf16 --out $d >/dev/null && cd $d && make -j4 >/dev/null) &
    (LINGC_FP8_TILE=$cfg $L run /tmp/ex/e.lir --weights $S --backend cuda --input /tmp/ex/e.safetensors --out /tmp/ex/cuda-${cfg//,/-}.safetensors >/dev/null) &
  done
  wait
  for cfg in $TILES; do
    echo "== tile $cfg"
    python3 bench/cuda/fp8_check.py compare /tmp/ex/cuda-${cfg//,/-}.safetensors /tmp/ex/interp.safetensors 1e-3 $EXPERTS_Y
    /tmp/tile-${cfg//,/-}/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2>"$OUT/tile-${cfg//,/-}.txt" >/dev/null
    grep -E "swiglu|grouped_linear|in all" "$OUT/tile-${cfg//,/-}.txt" | head -4
  done
  ;;
gridsync)
  # What a dependent step costs at decode sizes (bench/cuda/gridsync.cu): a chain of tiny kernels
  # with PDL in a CUDA graph (lingc's launches), without PDL, and one persistent kernel whose steps
  # are separated by grid-wide barriers (what a one-launch-per-layer decode kernel would pay):
  # microseconds a step at 1, 2 and 4 workgroups an SM.
  nvcc -O3 -gencode arch=compute_90a,code=sm_90a -o /tmp/gridsync bench/cuda/gridsync.cu || exit 1
  timeout 120 /tmp/gridsync | tee "$OUT/gridsync.jsonl"
  ;;
flagchain)
  # Whether a chain of dependent decode GEMVs can run at the weights' bandwidth (bench/cuda/flagchain.cu):
  # a kernel a step with PDL in a CUDA graph (lingc's form) against one persistent kernel whose steps
  # wait on per-step ready counts, reading the weights after the wait or with them already streaming
  # into shared memory; microseconds a step and the fraction of the copy bandwidth, D = 1024 and 2048.
  nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o /tmp/flagchain bench/cuda/flagchain.cu || exit 1
  timeout 200 /tmp/flagchain | tee "$OUT/flagchain.jsonl"
  ;;
gemmncu)
  # Where the bf16 expert GEMM's time goes (Nsight Compute, Ling-mini prefill 1x8192, the profile's
  # tile or LINGC_BF16_TILE): one launch each of the SwiGLU experts and the down projection, with the
  # speed-of-light, compute, memory and warp-state sections (tensor pipe activity, DRAM and L2
  # throughput, the stall reasons); raw report in $OUT/gemm-ncu-<kernel>.txt.
  M=bench/cuda/ling-mini-2.0-no-mtp
  $L compile $M --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j16 >/dev/null) || exit 1
  # LINGC_NCU_KERNELS: other kernels' names (each a name prefix before _N, or a full regex with ^...$).
  for k in ${LINGC_NCU_KERNELS:-k_swiglu k_grouped_linear}; do
    re=$k; [[ $re == ^* ]] || re="^${k}_[0-9]+$"
    timeout 240 /usr/local/cuda/bin/ncu --kernel-name regex:"$re" --launch-skip ${LINGC_NCU_SKIP:-19} --launch-count 1 \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats --section Occupancy \
      /tmp/mini/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 > "$OUT/gemm-ncu-$k.txt" 2>&1; echo "$k: ncu exit $?"
    grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L2 Cache Throughput|Executed Ipc|Issue Slots Busy|Stall|stalled|Cycles Per Issued|Eligible|Registers Per|Occupancy|Grid Size|Block Size" "$OUT/gemm-ncu-$k.txt" | head -30
  done
  ;;
attndecode)
  # Decode attention's merge kernels with the FP8 output projection input's quantize as their
  # epilogue (LINGC_ATTN_QUANT_EPILOGUE=all, the default since 2026-12-03): bench/cuda/ling-qp in bf16
  # (head_dim 128: a 1x128 group is a head's row; in f32, the default for --quantize on a bf16
  # checkpoint, no attention epilogue applies), W8A8, generate's greedy ids (decode: one row, the
  # merge epilogue) with =off and the default; memcheck and racecheck on generate with it; then
  # (LINGC_AE_AB=0 skips them) memcheck on FP8 Ling-mini's decode 1x64 and fp8ab with =prefill as mini8-env0.
  D=/tmp/qp; Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"
  rm -rf $D && mkdir -p $D && cp bench/cuda/ling-qp/config.json $D/ && $L init $D --weights $D/model.safetensors --inputs $D/ids.safetensors --graph forward --dims B=1,S=4 >/dev/null || exit 1
  for v in off all; do echo "generate, LINGC_ATTN_QUANT_EPILOGUE=$v: $(LINGC_ATTN_QUANT_EPILOGUE=$v $L generate $D $Q --backend cuda --prompt 5,6,7,8 --max-new-tokens 8 | paste -sd'|')"; done
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)  # the last one built: with the epilogues
  echo "epilogue flags: $(grep -c "qe[0-9]*_ = " "$(dirname $EXE)/model.cu"), decode merge kernels with it: $(grep -c "__global__.*k_attention_q_then" "$(dirname $EXE)/model.cu")"
  sanitized attn-decode $EXE generate --checkpoint $D --prompt 5,6,7,8 --max-new-tokens 4
  [ "${LINGC_AE_AB:-1}" = 0 ] && exit 0
  mini8_env0_memcheck ae LINGC_ATTN_QUANT_EPILOGUE=all || exit 1
  LINGC_ENVS="LINGC_ATTN_QUANT_EPILOGUE=prefill" bash "$0" fp8ab
  ;;
rowncu)
  # Nsight Compute on kernels of FP8 (mini8) and bf16 (mini) Ling-mini at prefill 1x8192:
  # LINGC_NCU="build:regex ..." (e.g. "mini8:^k_residual_norm_25$ mini:^k_residual_norm_12$"), one
  # launch each (the LINGC_NCU_SKIP-th, default 5); raw reports in $OUT/ncu-<build>-<n>.txt.
  M=bench/cuda/ling-mini-2.0-no-mtp; Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"
  [ -x /tmp/mini8/lingc_model ] || ( $L compile $M --target cuda $Q --out /tmp/mini8 >/dev/null && cd /tmp/mini8 && make -j8 >/dev/null ) &
  [ -x /tmp/mini/lingc_model ] || ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j8 >/dev/null ) &
  wait
  n=0
  for spec in ${LINGC_NCU:-}; do
    b=${spec%%:*}; re=${spec#*:}; n=$((n + 1))
    timeout 200 /usr/local/cuda/bin/ncu --kernel-name regex:"$re" --launch-skip ${LINGC_NCU_SKIP:-5} --launch-count 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats --section Occupancy \
      /tmp/$b/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 > "$OUT/ncu-$b-$n.txt" 2>&1; echo "== $b $re: ncu exit $?"
    grep -E "Duration|Memory Throughput|DRAM Throughput|L2 Cache Throughput|L1/TEX Hit|Mem Busy|Max Bandwidth|Issue Slots Busy|Registers Per|Achieved Occupancy|Theoretical Occupancy|Grid Size|Block Size|Stall [A-Z]|Warp Cycles Per Issued" "$OUT/ncu-$b-$n.txt" | head -24
  done
  ;;
prefillab)
  # A/B of lingc builds on prefill: dist/lingc.mjs (mini) against each of LINGC_ALT's builds
  # (dist/lingc-altN.mjs, carried beside it): the experts module (expert_check.py, uneven routing),
  # sanitized, and selftest under dist/lingc.mjs, then Ling-mini prefill 1x2048 and 1x8192 of the builds
  # alternately, two rounds, and the first LINGC_PROFILE_LINES (default 3) lines of each one's
  # per-kernel profile at 1x8192.
  ALTS=(${LINGC_ALT:?LINGC_ALT names the other builds}); BUILDS=(mini); M=bench/cuda/ling-mini-2.0-no-mtp
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j8 >/dev/null ) &
  for n in "${!ALTS[@]}"; do m=mini-alt$((n + 1)); BUILDS+=($m); ( node ${ALTS[$n]} compile $M --target cuda --out /tmp/$m >/dev/null && cd /tmp/$m && make -j8 >/dev/null ) & done
  experts_check || exit 1
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/ | head -1)lingc_model  # the experts module's default build (experts_check's last)
  sanitized ex $EXE run --checkpoint /tmp/ex/w.safetensors --graph e --input /tmp/ex/e.safetensors --out /tmp/ex/san.safetensors
  wait
  echo "== mini selftest"; timeout 300 /tmp/mini/lingc_model selftest | grep -E "grouped_gemm |FAIL"; echo "exit ${PIPESTATUS[0]}"
  alternate 1x2048,1x8192 "" "${BUILDS[@]}"
  for m in "${BUILDS[@]}"; do echo "== $m profile 1x8192"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 2 --profile 2>&1 >/dev/null | head -${LINGC_PROFILE_LINES:-3}; done
  ;;
rowsab)
  # A/B of lingc builds on all four benchmark rows: dist/lingc.mjs (mini) against each of LINGC_ALT's
  # builds (dist/lingc-altN.mjs, carried beside it). First the current build's selftest on ling-small
  # (bf16) and Ling-mini (its tile programs against the op table's direct forms), ling-small's under
  # memcheck and racecheck; then the rows of the builds alternately, two rounds, and the per-kernel
  # profile lines at 1x8192 matching LINGC_AB_GREP (default: the first LINGC_PROFILE_LINES, 3).
  ALTS=(${LINGC_ALT:?LINGC_ALT names the other builds}); BUILDS=(mini); M=bench/cuda/ling-mini-2.0-no-mtp
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j5 >/dev/null ) &
  ( $L compile tests/data/golden/ling-small --target cuda --out /tmp/small >/dev/null && cd /tmp/small && make -j5 >/dev/null ) &
  for n in "${!ALTS[@]}"; do m=mini-alt$((n + 1)); BUILDS+=($m); ( node ${ALTS[$n]} compile $M --target cuda --out /tmp/$m >/dev/null && cd /tmp/$m && make -j5 >/dev/null ) & done
  wait
  for m in small mini; do echo "== $m selftest"; timeout 200 /tmp/$m/lingc_model selftest | grep -E "${LINGC_SELFTEST_GREP:-FAIL}"; echo "exit ${PIPESTATUS[0]}"; done
  [ -n "${LINGC_SKIP_SAN:-}" ] || sanitized small-selftest /tmp/small/lingc_model selftest  # LINGC_SKIP_SAN=1: not here
  alternate 1x2048,1x8192 1x2048,32x2048 "${BUILDS[@]}"
  for m in "${BUILDS[@]}"; do echo "== $m profile 1x8192"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 2 --profile 2>&1 >/dev/null | grep -E "${LINGC_AB_GREP:-.}" | head -${LINGC_PROFILE_LINES:-3}; done
  ;;
fp8env)
  # A compile-time setting of the FP8 kernels (LINGC_ENVS, one build: e.g. LINGC_FP8_WGMMA=overlap)
  # checked, then timed: ling-small-fp8 built under it, its selftest (FAIL lines and the FP8 expert
  # GEMM's checks), compute-sanitizer memcheck and racecheck on its forward of the golden's ids; then
  # fp8ab with it (Ling-mini's rows against the default build and bf16).
  # LINGC_ENVS=-: the default build checked, and fp8ab with no other build.
  S=tests/data/golden/ling-small-fp8; E=${LINGC_ENVS:?LINGC_ENVS names the setting}; [ "$E" = - ] && { E=; unset LINGC_ENVS; }
  ( env $E $L compile $S --target cuda --out /tmp/small8-env >/dev/null && cd /tmp/small8-env && make -j16 >/dev/null ) || exit 1
  echo "== ling-small-fp8 selftest under '$E'"; timeout 200 /tmp/small8-env/lingc_model selftest > "$OUT/selftest-env.txt" 2>&1; echo "exit $?"
  grep -E "FAIL|grouped_gemm_fp8" "$OUT/selftest-env.txt" | head -8
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  sanitized small8-env /tmp/small8-env/lingc_model run --checkpoint $S --graph forward --input /tmp/ids8.safetensors --out /tmp/w8-env.safetensors
  bash "$0" fp8ab
  ;;
fp8ab)
  # A/B of lingc builds on the FP8 (W8A8) Ling-mini: dist/lingc.mjs (mini8) against each of LINGC_ALT's
  # builds (mini8-altN) and against dist/lingc.mjs under each of LINGC_ENVS (';' between builds:
  # mini8-envN), and bf16 Ling-mini of dist/lingc.mjs (mini) as the bar. First ling-small-fp8's
  # selftest (its tile programs and GEMVs against the op table's direct forms; LINGC_SELFTEST_GREP
  # picks the lines, default FAIL) and its W8A8 logits' distance to the golden's; then the four rows
  # of every build alternately, two rounds, and each FP8 build's decode batch-1 profile (the first
  # LINGC_PROFILE_LINES lines matching LINGC_AB_GREP) with its profiled steps a decode step counted (a step of two launches counts once).
  S=tests/data/golden/ling-small-fp8; M=bench/cuda/ling-mini-2.0-no-mtp; Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"
  ALTS=(${LINGC_ALT:-}); BUILDS=(mini8); IFS=';' read -ra ENVS <<< "${LINGC_ENVS:-}"
  ( $L compile $M --target cuda $Q --out /tmp/mini8 >/dev/null && cd /tmp/mini8 && make -j4 >/dev/null ) &
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j4 >/dev/null ) &
  ( $L compile $S --target cuda --out /tmp/small8 >/dev/null && cd /tmp/small8 && make -j4 >/dev/null ) &
  for n in "${!ALTS[@]}"; do m=mini8-alt$((n + 1)); BUILDS+=($m); ( node ${ALTS[$n]} compile $M --target cuda $Q --out /tmp/$m >/dev/null && cd /tmp/$m && make -j4 >/dev/null ) & done
  # LINGC_AB_FP8_FLAGS: compile options of the LINGC_ENVS builds too ("-" there for no setting), e.g.
  # LINGC_ENVS=- LINGC_AB_FP8_FLAGS="--fp8-gather before".
  for n in "${!ENVS[@]}"; do m=mini8-env$n; BUILDS+=($m); e=${ENVS[$n]}; [ "$e" = - ] && e=; [ -x /tmp/$m/lingc_model ] || ( env $e $L compile $M --target cuda $Q ${LINGC_AB_FP8_FLAGS:-} --out /tmp/$m >/dev/null && cd /tmp/$m && make -j4 >/dev/null ) & done
  wait
  for n in "${!ENVS[@]}"; do echo "mini8-env$n: ${ENVS[$n]} ${LINGC_AB_FP8_FLAGS:-}"; done
  echo "== ling-small-fp8 selftest"; timeout 200 /tmp/small8/lingc_model selftest | grep -E "${LINGC_SELFTEST_GREP:-FAIL}"; echo "exit ${PIPESTATUS[0]}"
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  echo "== W8A8 logits against the golden's"
  /tmp/small8/lingc_model run --checkpoint $S --graph forward --input /tmp/ids8.safetensors --out /tmp/w8.safetensors && python3 bench/cuda/fp8_check.py logits /tmp/w8.safetensors w8a8
  alternate 1x2048,1x8192 1x2048,32x2048 "${BUILDS[@]}" mini
  # The forward graph too (every position's logits; the prefill rows above run generation's prefill
  # graph, the last position's logits only): ALT_ARGS="--graph forward".
  ALT_ARGS="--graph forward" alternate 1x2048,1x8192 "" "${BUILDS[@]}" mini
  for m in "${BUILDS[@]}"; do
    echo "== $m decode 1x2048 profile"
    timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 1 --profile 2> "$OUT/profile-$m-decode.txt" >/dev/null
    grep -E "${LINGC_AB_GREP:-.}" "$OUT/profile-$m-decode.txt" | head -${LINGC_PROFILE_LINES:-3}
    awk '/ x /{n += $3} END {print "profiled steps a decode step:", n}' "$OUT/profile-$m-decode.txt"
    # LINGC_AB_DECODE32: also the decode batch-32 profile (its first lines).
    if [ -n "${LINGC_AB_DECODE32:-}" ]; then
      timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 32x2048 --repeats 1 --profile 2> "$OUT/profile-$m-decode32.txt" >/dev/null
      echo "== $m decode 32x2048 profile: $(head -1 "$OUT/profile-$m-decode32.txt")"; head -${LINGC_AB_DECODE32} "$OUT/profile-$m-decode32.txt" | tail -n +2
    fi
    # LINGC_AB_PREFILL_GREP: also the prefill 1x8192 profile's lines matching it (e.g. the expert GEMMs).
    if [ -n "${LINGC_AB_PREFILL_GREP:-}" ]; then
      timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2> "$OUT/profile-$m-prefill.txt" >/dev/null
      echo "== $m prefill 1x8192 profile: $(head -1 "$OUT/profile-$m-prefill.txt")"; grep -E "$LINGC_AB_PREFILL_GREP" "$OUT/profile-$m-prefill.txt" | head -8
    fi
  done
  # LINGC_NCU_KERNELS: kernels of mini8 (name prefixes before _N, or full regexes with ^...$) for Nsight Compute, one launch each at 1x8192 (the LINGC_NCU_SKIP-th, default 19).
  for k in ${LINGC_NCU_KERNELS:-}; do
    re=$k; [[ $re == ^* ]] || re="^${k}_[0-9]+$"
    timeout 200 /usr/local/cuda/bin/ncu --kernel-name regex:"$re" --launch-skip ${LINGC_NCU_SKIP:-19} --launch-count 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats --section Occupancy \
      /tmp/mini8/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 > "$OUT/ncu-mini8-$k.txt" 2>&1; echo "$k: ncu exit $?"
    grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L2 Cache Throughput|Issue Slots Busy|Registers Per|Achieved Occupancy|Grid Size|Block Size|Stall [A-Z]" "$OUT/ncu-mini8-$k.txt" | head -24
  done
  ;;
qprologue)
  # Quantize prologues (LINGC_QUANT_PROLOGUE=on, or LINGC_QP's value: narrow) on the GPU: a small random Ling 2.0 whose K are all
  # whole 512s (bench/cuda/ling-qp: hidden 512, 4 heads of 128, 32 experts of width 512), W8A8
  # quantized at load. Its forward on 4 tokens (where every quantize is a prologue: rows <= 16, and
  # the experts' <= 32 / 4) with and without them, bit for bit; generate's greedy ids with and
  # without (decode: one row); then fp8ab with LINGC_ENVS=LINGC_QUANT_PROLOGUE=on (Ling-mini's rows).
  D=/tmp/qp; Q="--quantize fp8 --activation-scheme dynamic"; QP=${LINGC_QP:-on}
  rm -rf $D && mkdir -p $D && cp bench/cuda/ling-qp/config.json $D/ && $L init $D --weights $D/model.safetensors --inputs $D/ids.safetensors --graph forward --dims B=1,S=4 >/dev/null || exit 1
  for v in off $QP; do LINGC_QUANT_PROLOGUE=$v $L run $D $Q --backend cuda --input $D/ids.safetensors --out $D/$v.safetensors >/dev/null || echo "run with LINGC_QUANT_PROLOGUE=$v failed"; done
  echo "== forward, prologues off against on"; python3 bench/cuda/same_outputs.py $D/off.safetensors $D/$QP.safetensors
  for v in off $QP; do echo "generate, prologues $v: $(LINGC_QUANT_PROLOGUE=$v $L generate $D $Q --backend cuda --prompt 5,6,7,8 --max-new-tokens 8 | paste -sd'|')"; done
  # Ling-mini's FP8 build with them (fp8ab's mini8-env0, reused there): memcheck on a decode step
  # (every prologue runs at one row); fp8ab only where it is clean.
  mini8_env0_memcheck qp LINGC_QUANT_PROLOGUE=$QP || exit 1
  # LINGC_QP_ENVS: the timed builds (fp8ab's LINGC_ENVS; the first must be the sanitized one, e.g.
  # "LINGC_QUANT_PROLOGUE=on;LINGC_QUANT_PROLOGUE=on LINGC_PAIR_LAUNCH=off").
  LINGC_ENVS="${LINGC_QP_ENVS:-LINGC_QUANT_PROLOGUE=$QP}" bash "$0" fp8ab
  ;;
stamps)
  # Where a decode step's time goes, from inside the CUDA graph, under compile-time settings: Ling-mini
  # bf16 (and FP8 W8A8 with LINGC_STAMPS_FP8=1) built by dist/lingc.mjs under each of LINGC_ENVS (';'
  # between builds, '-' for none) twice: plain (mini-envN, mini8-envN) and with timeline stamps
  # (LINGC_STAMPS=on: each generated kernel stamps %globaltimer at its start, grid barriers and end,
  # lingc_runtime.h; -st). Each stamped build's one graphed step read by bench/cuda/stamps.py (whole
  # file in $OUT/stamps-BUILD.txt, its first LINGC_STAMP_LINES lines and the middle layer printed);
  # then the plain builds' decode batch 1 (cache 2048, graph ms a step) alternately, three rounds,
  # printed last and kept in $OUT/stamps-times.txt. LINGC_STAMPS_KINDS="mini8": the FP8 builds only.
  IFS=';' read -ra ENVS <<< "${LINGC_ENVS:--}"; M=bench/cuda/ling-mini-2.0-no-mtp; Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"
  BUILDS=(); KINDS="mini"; [ "${LINGC_STAMPS_FP8:-0}" = 1 ] && KINDS="mini mini8"; KINDS=${LINGC_STAMPS_KINDS:-$KINDS}
  for n in "${!ENVS[@]}"; do
    e=${ENVS[$n]}; [ "$e" = - ] && e=
    for kind in $KINDS; do
      f=; [ $kind = mini8 ] && f=$Q; BUILDS+=($kind-env$n)
      ( env $e $L compile $M --target cuda $f --out /tmp/$kind-env$n >/dev/null && cd /tmp/$kind-env$n && make -j2 >/dev/null ) &
      ( env $e LINGC_STAMPS=on $L compile $M --target cuda $f --out /tmp/$kind-env$n-st >/dev/null && cd /tmp/$kind-env$n-st && make -j2 >/dev/null ) &
    done
  done
  # LINGC_STAMPS_CHECK=1: the last setting checked first: ling-tiny's golden logits on CUDA, one
  # sequence's 10 greedy ids on ling-tiny and ling-small against the interpreter, and that run on
  # ling-small under compute-sanitizer memcheck and racecheck.
  if [ "${LINGC_STAMPS_CHECK:-0}" = 1 ]; then
    E=${ENVS[-1]}; [ "$E" = - ] && E=; P1=${PROMPT%%;*}; mkdir -p /tmp/one
    echo "== checks under $E"
    env $E $L run $G --backend cuda --input $G/golden.safetensors --out "$OUT/run.safetensors" && python3 bench/cuda/check_golden.py "$OUT/run.safetensors" $G/golden.safetensors
    one_sequence "$E"
    # With FP8 builds: ling-small-fp8 under the last setting: its selftest (the GEMVs against the op
    # table's direct forms), weight-only generate against the golden's ids, and the W8A8 generate's
    # ids under the first setting and the last (equal where the setting keeps every sum's order), the
    # last under memcheck.
    if [[ " $KINDS " == *" mini8 "* ]]; then
      S8=tests/data/golden/ling-small-fp8; E0=${ENVS[0]}; [ "$E0" = - ] && E0=
      env $E $L compile $S8 --target cuda --out /tmp/small8-st >/dev/null && (cd /tmp/small8-st && make -j16 >/dev/null)
      timeout 200 /tmp/small8-st/lingc_model selftest > "$OUT/selftest-small8.txt" 2>&1; echo "ling-small-fp8 selftest under $E: exit $?, $(grep -c PASS "$OUT/selftest-small8.txt") PASS, $(grep -c FAIL "$OUT/selftest-small8.txt") FAIL"
      P8=$(python3 bench/cuda/fp8_check.py ids prompt); W8=$(python3 bench/cuda/fp8_check.py ids want)
      GOT=$(env $E $L generate $S8 --activation-scheme none --backend cuda --prompt "$P8" --max-new-tokens 6 2>/dev/null | paste -sd'|')
      [ "$GOT" = "$W8" ] && echo "greedy_ids_w8a16 PASS" || echo "greedy_ids_w8a16 FAIL: $GOT / $W8"
      A=$(env $E0 $L generate $S8 --backend cuda --prompt "$P1" --max-new-tokens 10 --ignore-eos 2>/dev/null); B=$(env $E $L generate $S8 --backend cuda --prompt "$P1" --max-new-tokens 10 --ignore-eos 2>/dev/null)
      [ -n "$B" ] && [ "$A" = "$B" ] && r=equal || r=DIFFERENT; echo "ling-small-fp8 W8A8 one sequence, '$E0' against '$E': $r ($A / $B)"
      env $E compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 $L generate $S8 --backend cuda --prompt "$P1" --max-new-tokens 3 --ignore-eos > "$OUT/san-small8-memcheck.txt" 2>&1; echo "memcheck (ling-small-fp8 W8A8 one sequence) exit $?"; grep "SUMMARY" "$OUT/san-small8-memcheck.txt" | sort | uniq -c
    fi
  fi
  wait
  for m in "${BUILDS[@]}"; do
    echo "== $m-st: $(LINGC_STAMPS_OUT=$OUT/stamps-$m timeout 120 /tmp/$m-st/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 20 2>/dev/null | grep -o '"graph_ms_per_step": [0-9.]*')" | tee -a "$OUT/stamps-times.txt"
    python3 bench/cuda/stamps.py /tmp/$m-st/model.cu $OUT/stamps-$m-b1.bin > "$OUT/stamps-$m.txt"; head -${LINGC_STAMP_LINES:-14} "$OUT/stamps-$m.txt"; sed -n '/^repeat/,$p' "$OUT/stamps-$m.txt"
    rm -f $OUT/stamps-$m-b1.bin
  done
  for n in "${!ENVS[@]}"; do echo "env$n: ${ENVS[$n]}"; done | tee -a "$OUT/stamps-times.txt"
  for round in 1 2 3; do for m in "${BUILDS[@]}"; do
    echo "== $m round $round: $(timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 20 2>/dev/null | grep -o '"graph_ms_per_step": [0-9.]*')" | tee -a "$OUT/stamps-times.txt"
  done; done
  ;;
phasesab)
  # Phase launches (LINGC_PHASE_LAUNCH) at decode batch 1, lean: the grid barrier against a kernel
  # boundary (gridsync.cu); bf16 and FP8 (W8A8) Ling-mini built as is (mini, mini8) and under each of
  # LINGC_ENVS (';' between builds: mini-envN, mini8-envN); under the first setting, one sequence's 10
  # greedy ids on ling-tiny and ling-small against the interpreter, that run on ling-small under
  # memcheck and racecheck, and the bf16 build's selftest; then each build's kernel launches a decode
  # step (LINGC_GRAPH_KERNELS=1) and decode batch 1 (cache 2048, graph ms a step), alternately, two rounds.
  # LINGC_ALT=<bundle>: also bf16 as that bundle builds it under the first setting (mini-alt).
  IFS=';' read -ra ENVS <<< "${LINGC_ENVS:?LINGC_ENVS names the settings}"; M=bench/cuda/ling-mini-2.0-no-mtp
  Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"; BUILDS=(mini mini8)
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j3 >/dev/null ) &
  ( $L compile $M --target cuda $Q --out /tmp/mini8 >/dev/null && cd /tmp/mini8 && make -j3 >/dev/null ) &
  for n in "${!ENVS[@]}"; do
    e=${ENVS[$n]}; BUILDS+=(mini-env$n mini8-env$n)
    ( env $e $L compile $M --target cuda --out /tmp/mini-env$n >/dev/null && cd /tmp/mini-env$n && make -j3 >/dev/null ) &
    ( env $e $L compile $M --target cuda $Q --out /tmp/mini8-env$n >/dev/null && cd /tmp/mini8-env$n && make -j3 >/dev/null ) &
  done
  # LINGC_ALT (a lingc bundle, e.g. another commit's dist/lingc.mjs): bf16 built by it under the first setting too (mini-alt).
  if [ -n "${LINGC_ALT:-}" ]; then
    BUILDS+=(mini-alt); ( env ${ENVS[0]} node $LINGC_ALT compile $M --target cuda --out /tmp/mini-alt >/dev/null && cd /tmp/mini-alt && make -j3 >/dev/null ) &
  fi
  nvcc -O3 -gencode arch=compute_90a,code=sm_90a -o /tmp/gridsync bench/cuda/gridsync.cu && timeout 120 /tmp/gridsync | tee "$OUT/gridsync.jsonl"
  E0=${ENVS[0]}; P1=${PROMPT%%;*}; mkdir -p /tmp/one
  for C in ling-tiny ling-small; do
    $L generate tests/data/golden/$C --backend interp --prompt "$P1" --max-new-tokens 10 --ignore-eos > /tmp/one/$C-interp.txt 2>/dev/null &
    env $E0 $L generate tests/data/golden/$C --backend cuda --prompt "$P1" --max-new-tokens 10 --ignore-eos > /tmp/one/$C-env0.txt 2>/tmp/one/$C-env0.err &
  done
  wait
  for C in ling-tiny ling-small; do
    [ -s /tmp/one/$C-env0.txt ] && [ "$(cat /tmp/one/$C-env0.txt)" = "$(cat /tmp/one/$C-interp.txt)" ] && r=equal || r=DIFFERENT
    echo "$C one sequence, $E0 against interp: $r ($(cat /tmp/one/$C-env0.txt) / $(cat /tmp/one/$C-interp.txt))"; tail -2 /tmp/one/$C-env0.err
  done
  echo "== ling-small one sequence (decode batch 1) under compute-sanitizer, $E0"
  for tool in memcheck racecheck; do
    env $E0 compute-sanitizer --tool $tool --target-processes all --error-exitcode 9 $L generate tests/data/golden/ling-small --backend cuda --prompt "$P1" --max-new-tokens 3 --ignore-eos > "$OUT/san-one-$tool.txt" 2>&1; echo "$tool exit $?"; grep -m3 "Invalid\|Race\|Hazard" "$OUT/san-one-$tool.txt"; grep "SUMMARY" "$OUT/san-one-$tool.txt" | sort | uniq -c
  done
  echo "== mini-env0 selftest ($E0)"; timeout 150 /tmp/mini-env0/lingc_model selftest > "$OUT/selftest-env0.txt" 2>&1; echo "exit $?"; grep -c PASS "$OUT/selftest-env0.txt"; grep FAIL "$OUT/selftest-env0.txt" | head -3
  for n in "${!ENVS[@]}"; do echo "mini-env$n, mini8-env$n: ${ENVS[$n]}"; done
  for m in "${BUILDS[@]}"; do echo "== $m: $(LINGC_GRAPH_KERNELS=1 timeout 60 /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 1 2>&1 | grep -o "graph [a-z_]* captured: [0-9]* kernel launches" | sort -u | paste -sd" ")"; done
  alternate "" 1x2048 "${BUILDS[@]}"
  ;;
decodeab)
  # A/B of compile-time settings at decode, bf16 and FP8 (W8A8) Ling-mini alike: built by dist/lingc.mjs
  # as is (mini, mini8) and under each of LINGC_ENVS (';' between builds: mini-envN, mini8-envN). First
  # the default build's checks: ling-tiny's golden logits and greedy ids on CUDA, one sequence's greedy
  # ids on each golden checkpoint (CUDA as built and under each setting against the interpreter), that
  # run under compute-sanitizer memcheck and racecheck (on ling-small; under LINGC_SAN_ENV's setting),
  # ling-small-fp8's selftest (FAIL lines) under memcheck; then the decode rows (batch 1 and 32, cache 2048) and
  # prefill 1x2048 of every build alternately, two rounds, and each build's decode batch-1 profile
  # (first LINGC_PROFILE_LINES lines, default 12).
  IFS=';' read -ra ENVS <<< "${LINGC_ENVS:?LINGC_ENVS names the settings}"; M=bench/cuda/ling-mini-2.0-no-mtp; S=tests/data/golden/ling-small-fp8
  Q="--quantize fp8 --activation-scheme dynamic --dtype bf16"; BUILDS=(mini mini8)
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j4 >/dev/null ) &
  ( $L compile $M --target cuda $Q --out /tmp/mini8 >/dev/null && cd /tmp/mini8 && make -j4 >/dev/null ) &
  ( $L compile $S --target cuda --out /tmp/small8 >/dev/null && cd /tmp/small8 && make -j4 >/dev/null ) &
  for n in "${!ENVS[@]}"; do
    e=${ENVS[$n]}; BUILDS+=(mini-env$n mini8-env$n)
    ( env $e $L compile $M --target cuda --out /tmp/mini-env$n >/dev/null && cd /tmp/mini-env$n && make -j4 >/dev/null ) &
    ( env $e $L compile $M --target cuda $Q --out /tmp/mini8-env$n >/dev/null && cd /tmp/mini8-env$n && make -j4 >/dev/null ) &
  done
  echo "== ling-tiny golden"
  $L run $G --backend cuda --input $G/golden.safetensors --out "$OUT/run.safetensors" && python3 bench/cuda/check_golden.py "$OUT/run.safetensors" $G/golden.safetensors
  GOT=$($L generate $G --backend cuda --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|'); [ "$GOT" = "$WANT" ] && echo "greedy_ids PASS" || echo "greedy_ids FAIL: $GOT"
  # One sequence (decode batch 1: where the GEMVs, pairs and tails run), 10 new tokens: CUDA as built and
  # under each LINGC_ENVS against the interpreter, on the golden checkpoints (ling-small-fp8: W8A8).
  P1=${PROMPT%%;*}; mkdir -p /tmp/one
  for C in ling-tiny ling-small ling-small-fp8; do
    $L generate tests/data/golden/$C --backend interp --prompt "$P1" --max-new-tokens 10 --ignore-eos > /tmp/one/$C-interp.txt 2>/tmp/one/$C-interp.err &
    $L generate tests/data/golden/$C --backend cuda --prompt "$P1" --max-new-tokens 10 --ignore-eos > /tmp/one/$C-cuda.txt 2>/tmp/one/$C-cuda.err &
    for n in "${!ENVS[@]}"; do env ${ENVS[$n]} $L generate tests/data/golden/$C --backend cuda --prompt "$P1" --max-new-tokens 10 --ignore-eos > /tmp/one/$C-env$n.txt 2>/tmp/one/$C-env$n.err & done
  done
  wait
  for C in ling-tiny ling-small ling-small-fp8; do
    for v in cuda $(for n in "${!ENVS[@]}"; do echo env$n; done); do
      [ -s /tmp/one/$C-$v.txt ] && [ "$(cat /tmp/one/$C-$v.txt)" = "$(cat /tmp/one/$C-interp.txt)" ] && r=equal || r=DIFFERENT
      echo "$C one sequence, $v against interp: $r ($(cat /tmp/one/$C-$v.txt) / $(cat /tmp/one/$C-interp.txt))"; tail -2 /tmp/one/$C-$v.err
    done
  done
  for n in "${!ENVS[@]}"; do echo "mini-env$n, mini8-env$n: ${ENVS[$n]}"; done
  echo "== ling-small one sequence (decode batch 1) under compute-sanitizer ${LINGC_SAN_ENV:-}"
  for tool in memcheck racecheck; do
    env ${LINGC_SAN_ENV:-} compute-sanitizer --tool $tool --target-processes all --error-exitcode 9 $L generate tests/data/golden/ling-small --backend cuda --prompt "$P1" --max-new-tokens 3 --ignore-eos > "$OUT/san-one-$tool.txt" 2>&1; echo "$tool exit $?"; grep -m3 "Invalid\|Race\|Hazard" "$OUT/san-one-$tool.txt"; grep "SUMMARY" "$OUT/san-one-$tool.txt" | sort | uniq -c
  done
  echo "== ling-small-fp8 selftest under memcheck"
  compute-sanitizer --tool memcheck --error-exitcode 9 /tmp/small8/lingc_model selftest > "$OUT/san-decodeab.txt" 2>&1; echo "memcheck exit $?"; grep -c PASS "$OUT/san-decodeab.txt"; grep -E "FAIL" "$OUT/san-decodeab.txt" | head -3; tail -1 "$OUT/san-decodeab.txt"
  alternate 1x2048 1x2048,32x2048 "${BUILDS[@]}"
  for m in "${BUILDS[@]}"; do echo "== $m decode 1x2048 profile"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 1 --profile 2>&1 >/dev/null | head -${LINGC_PROFILE_LINES:-12}; done
  ;;
envbuild|envab)
  # A/B of environment settings read at compile time (tile choices, kernel knobs): Ling-mini built by
  # dist/lingc.mjs under each of LINGC_ENVS ("A=1 B=2;C=3": ';' between builds, "-" for none) into
  # /tmp/mini-envN. envbuild only builds (start it in the background while another mode runs; envab
  # then reuses what it built); envab then runs the builds' prefill rows (LINGC_PREFILL, default
  # 1x2048,1x8192) alternately, two rounds, and each one's 1x8192 profile lines matching LINGC_AB_GREP.
  IFS=';' read -ra ENVS <<< "${LINGC_ENVS:?LINGC_ENVS names the settings}"; BUILDS=(); M=bench/cuda/ling-mini-2.0-no-mtp
  for n in "${!ENVS[@]}"; do
    m=mini-env$n; BUILDS+=($m); e=${ENVS[$n]}; [ "$e" = - ] && e=
    [ -x /tmp/$m/lingc_model ] || ( env $e $L compile $M --target cuda --out /tmp/$m >/dev/null && cd /tmp/$m && make -j5 >/dev/null ) &
  done
  wait
  [ "$1" = envbuild ] && exit 0
  for n in "${!ENVS[@]}"; do echo "mini-env$n: ${ENVS[$n]}"; done
  alternate "${LINGC_PREFILL-1x2048,1x8192}" "" "${BUILDS[@]}"
  for m in "${BUILDS[@]}"; do echo "== $m profile 1x8192"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2>&1 >/dev/null | grep -E "${LINGC_AB_GREP:-.}" | head -${LINGC_PROFILE_LINES:-3}; done
  ;;
flagsab)
  # A/B of compile options: Ling-mini built by dist/lingc.mjs as is (mini) and with LINGC_AB_FLAGS
  # (mini-flags, e.g. "--prefer moe_dispatch:dispatch_scan"); ling-tiny's golden logits and greedy ids
  # on CUDA with the flags; then the benchmark's four rows of both builds alternately, two rounds, and
  # the per-kernel profile lines matching LINGC_AB_GREP (default: everything's first 3 lines) at 1x2048 and 1x8192.
  FL=${LINGC_AB_FLAGS:?LINGC_AB_FLAGS names the compile options}; M=bench/cuda/ling-mini-2.0-no-mtp
  ( $L compile $M --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j8 >/dev/null ) &
  ( $L compile $M --target cuda $FL --out /tmp/mini-flags >/dev/null && cd /tmp/mini-flags && make -j8 >/dev/null ) &
  echo "== ling-tiny golden with $FL"
  $L run $G --backend cuda $FL --input $G/golden.safetensors --out "$OUT/run.safetensors" && python3 bench/cuda/check_golden.py "$OUT/run.safetensors" $G/golden.safetensors
  GOT=$($L generate $G --backend cuda $FL --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|'); [ "$GOT" = "$WANT" ] && echo "greedy_ids PASS" || echo "greedy_ids FAIL: $GOT"
  wait
  alternate 1x2048,1x8192 1x2048,32x2048 mini mini-flags
  for m in mini mini-flags; do for row in 1x2048 1x8192; do echo "== $m profile $row"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill $row --decode "" --repeats 2 --profile 2>&1 >/dev/null | grep -E "${LINGC_AB_GREP:-.}" | head -${LINGC_PROFILE_LINES:-3}; done; done
  ;;
wstiles)
  # The warp-specialized wgmma expert GEMM (tile wgmma-ws,bm,bn,stages[,tiles]: a producer warpgroup
  # copies, mbarriers hand the stages over, a workgroup takes `tiles` consecutive tiles) against the
  # profile's tile. First the experts module under each ws tile against the interpreter (a hang is
  # cut after 120 s), memcheck and racecheck on the first; then Ling-mini built with each tile:
  # prefill per-kernel times, and prefill 1x2048 and 1x8192 of the builds alternately, two rounds.
  # LINGC_WS_TILES (default wgmma-ws,128,256,4,2), LINGC_WS_BASE (default wgmma,128,256,4).
  WSS=${LINGC_WS_TILES:-wgmma-ws,128,256,4,2}; BASE=${LINGC_WS_BASE:-wgmma,128,256,4}; M=bench/cuda/ling-mini-2.0-no-mtp
  for cfg in $BASE $WSS; do (LINGC_BF16_TILE=$cfg $L compile $M --target cuda --out /tmp/tile-${cfg//,/-} >/dev/null && cd /tmp/tile-${cfg//,/-} && make -j8 >/dev/null) & done
  mkdir -p /tmp/ex && python3 bench/cuda/expert_check.py make /tmp/ex || exit 1
  R="/tmp/ex/e.lir --weights /tmp/ex/w.safetensors --input /tmp/ex/e.safetensors"
  $L run $R --backend interp --out /tmp/ex/interp.safetensors >/dev/null || exit 1
  first=1
  for WS in $WSS; do
    LINGC_BF16_TILE=$WS timeout 120 $L run $R --backend cuda --out /tmp/ex/ws.safetensors >/dev/null; rc=$?
    if [ $rc != 0 ]; then echo "the experts module under $WS: exit $rc (124: hung, cut)"; pkill -9 lingc_model; exit 1; fi
    echo "== $WS experts module vs interp"; python3 bench/cuda/expert_check.py compare /tmp/ex/ws.safetensors /tmp/ex/interp.safetensors 0.0156 | tail -3
    if [ $first = 1 ]; then
      EXE=$(ls -td /tmp/lingc-cache/cuda/*/ | head -1)lingc_model
      sanitized ws $EXE run --checkpoint /tmp/ex/w.safetensors --graph e --input /tmp/ex/e.safetensors --out /tmp/ex/san-ws.safetensors
      first=0
    fi
  done
  wait
  for cfg in $BASE $WSS; do
    echo "== $cfg profile"; timeout 120 /tmp/tile-${cfg//,/-}/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 2 --profile 2>"$OUT/tile-${cfg//,/-}.txt" >/dev/null
    grep -E "swiglu|grouped_linear|in all" "$OUT/tile-${cfg//,/-}.txt" | head -3
  done
  for round in 1 2; do
    for cfg in $BASE $WSS; do
      echo "== $cfg, round $round"; timeout 120 /tmp/tile-${cfg//,/-}/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode "" --repeats 5 | grep -o '"seq": [0-9]*, "ms": [0-9.]*'
    done
  done
  ;;
tiles)
  # The routed experts' bf16 tile program (backends/kernels/gen/grouped-gemm.ts, the "grouped_gemm"
  # kernel): against the interpreter and against one cuBLASLt GEMM per expert (expert_loop) on an
  # uneven routing (bench/cuda/expert_check.py), memcheck and racecheck; ling-small (bf16) end to
  # end, tile program against expert_loop; then, for each tile of LINGC_BF16_TILES
  # (bm,bn,wm,wn,stages[,bk], wgmma,bm,bn,stages, or loop for expert_loop), Ling-mini-2.0's prefill
  # per-kernel times.
  # (The runtime's hand-written grouped GEMM was removed after commit 00a406e, where the tile program
  # measured faster: bench/results/tiles-2026-11-30-h200.md.)
  TILED="--passes cse,dce,fusion{profile=cuda-sm90a},select{profile=cuda-sm90a,prefer=expert:grouped_gemm}"
  M=bench/cuda/ling-mini-2.0-no-mtp; Q=tests/data/golden/ling-small
  # "loop" in the list: expert_loop (one cuBLASLt GEMM per expert), the baseline of the sweep.
  TILES=${LINGC_BF16_TILES:-wgmma,128,256,4 128,128,64,64,3 loop}
  experts_check || exit 1
  R="/tmp/ex/e.lir --weights /tmp/ex/w.safetensors --input /tmp/ex/e.safetensors"
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)
  sanitized tiles $EXE run --checkpoint /tmp/ex/w.safetensors --graph e --input /tmp/ex/e.safetensors --out /tmp/ex/san.safetensors
  echo "== ling-small (bf16) end to end: tile program (forced) vs expert_loop"
  python3 bench/cuda/fp8_check.py ids /tmp/ids8.safetensors
  $L run $Q --backend cuda $TILED --input /tmp/ids8.safetensors --out /tmp/ex/small-tiled.safetensors >/dev/null
  $L run $Q --backend cuda $LOOP --input /tmp/ids8.safetensors --out /tmp/ex/small-loop.safetensors >/dev/null
  python3 bench/cuda/expert_check.py compare /tmp/ex/small-tiled.safetensors /tmp/ex/small-loop.safetensors 0.0156
  for cfg in $TILES; do
    d=/tmp/tile-${cfg//,/-}
    if [ $cfg = loop ]; then ($L compile $M --target cuda $LOOP --out $d >/dev/null && cd $d && make -j4 >/dev/null) &
    else (LINGC_BF16_TILE=$cfg $L compile $M --target cuda --out $d >/dev/null && cd $d && make -j4 >/dev/null) & fi
    [ $cfg = loop ] || (LINGC_BF16_TILE=$cfg $L run $R --backend cuda --out /tmp/ex/cuda-${cfg//,/-}.safetensors >/dev/null) &
  done
  wait
  for cfg in $TILES; do
    echo "== tile $cfg"
    [ $cfg = loop ] || python3 bench/cuda/expert_check.py compare /tmp/ex/cuda-${cfg//,/-}.safetensors /tmp/ex/interp.safetensors 0.0156 | tail -1
    for shape in 1x2048 1x8192; do
      /tmp/tile-${cfg//,/-}/lingc_model bench --random-weights --prefill $shape --decode "" --repeats 2 --profile 2>"$OUT/tile-${cfg//,/-}-$shape.txt" >/dev/null
      echo "prefill $shape:"; grep -E "swiglu|grouped_linear|in all" "$OUT/tile-${cfg//,/-}-$shape.txt" | head -3
    done
  done
  ;;
wgsl)
  # WGSL on the H200 through Dawn's Vulkan backend (the issue's bar: Ling-mini-2.0-shaped decode batch 1
  # at 5.6 ms per step or less). Carry (7 paths): .gpu/node.xz, .gpu/dawn.node.xz (xz of
  # node_modules/webgpu/dist/linux-x64/dawn.node: the working tree's 64 MiB limit; make it with
  # `xz -T2 -9 -c node_modules/webgpu/dist/linux-x64/dawn.node > .gpu/dawn.node.xz`), dist/lingc.mjs,
  # dist/bench-wgsl.mjs, .gl (the Vulkan/EGL loader debs: the device README's recipe, kept out of git),
  # node_modules/webgpu/index.js, node_modules/webgpu/package.json.
  # The ling-tiny golden on the adapter first; then Ling-mini-2.0's shape with 4 layers
  # (bench/cuda/ling-mini-4l, random weights) on WGSL (adapter limits) and on CUDA in the same call.
  for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
  mkdir -p node_modules/webgpu/dist/linux-x64 && python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/dawn.node.xz'), open('node_modules/webgpu/dist/linux-x64/dawn.node', 'wb'))"
  [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  # LINGC_SKIP_CUDA=1: WGSL only (the CUDA build skipped, when device time is short).
  # The golden with the GPU kernel forms forced (the baseline profile alone would not pick them).
  echo "== ling-tiny golden on the adapter (GPU kernel forms)"
  LINGC_WGSL_GPU_FORMS=1 $L run $G --backend wgsl --input $G/golden.safetensors --out "$OUT/wgsl.safetensors" && python3 bench/cuda/check_golden.py "$OUT/wgsl.safetensors" $G/golden.safetensors
  # LINGC_WGSL_MODEL=bench/cuda/ling-mini-2.0-no-mtp: the full 20-layer shape the issue's bar names
  # (about 32 GB of random bf16 weights written to /tmp first) instead of the 4-layer one.
  # LINGC_WGSL_RANDOM=1: random weights made in memory by the benchmark (bench/random-weights.ts),
  # no checkpoint written and read (the 20-layer shape's 32 GB would take most of a call).
  mkdir -p /tmp/m4 && cp ${LINGC_WGSL_MODEL:-bench/cuda/ling-mini-4l}/config.json /tmp/m4/
  RW=; if [ -n "${LINGC_WGSL_RANDOM:-}" ]; then RW=--random-weights; else $L init /tmp/m4 --weights /tmp/m4/model.safetensors --seed 1 >/dev/null || exit 1; fi
  echo "== WGSL, Ling-mini-2.0 shape ($(python3 -c "import json; print(json.load(open('/tmp/m4/config.json'))['num_hidden_layers'])") layers): prefill, then decode batch 1 from the prompt's cache"
  # LINGC_WGSL_CPUPROF=1: instead of the prompt benchmarks, the host's JS time over decode steps (a V8
  # profile of a 64-token prompt and 512 decode steps, summarized by function; the weights' load is
  # in it too); the variants below still run.
  if [ -n "${LINGC_WGSL_CPUPROF:-}" ]; then
    echo "== host CPU profile: prefill 1x64 and 512 decode steps, one run"
    node --cpu-prof --cpu-prof-dir=/tmp/prof dist/bench-wgsl.mjs --checkpoint /tmp/m4 $RW --target-profile adapter --prompt 64 --steps 512 --runs 1 --fused-only
    python3 bench/cpuprof_top.py /tmp/prof/*.cpuprofile 40 | tee "$OUT/cpuprof.txt"
    LINGC_WGSL_PROMPTS=" "
  fi
  # LINGC_WGSL_CLOCKS=1: the GPU's clocks, power and clock-event reasons sampled every 100 ms
  # through the benchmarks (to $OUT/clocks.csv; each benchmark's start time is printed beside it).
  [ -n "${LINGC_WGSL_CLOCKS:-}" ] && { nvidia-smi --query-gpu=timestamp,pstate,clocks.sm,clocks.mem,power.draw,clocks_event_reasons.active --format=csv -lms 100 > "$OUT/clocks.csv" & CLK=$!; }
  # LINGC_WGSL_PROMPTS="512 2048": the benchmark at each prompt (cache) length, in turn, a process
  # each ("2048,512,2048": the lengths in turn in one process, on one loaded model);
  # LINGC_WGSL_KERNELS= (empty): no per-kernel table (it loads the model a second time);
  # LINGC_WGSL_ARGS: more benchmark options (e.g. "--prefill-chunk 512": the cache built by chunks).
  for P in ${LINGC_WGSL_PROMPTS-2048}; do
    echo "== prompt $P, started $(date +%H:%M:%S.%N)"
    node dist/bench-wgsl.mjs --checkpoint /tmp/m4 $RW --target-profile adapter --prompt $P --steps ${LINGC_WGSL_STEPS:-16} --runs ${LINGC_WGSL_RUNS:-3} --fused-only ${LINGC_WGSL_KERNELS---kernels} ${LINGC_WGSL_ARGS:-}
  done
  # LINGC_WGSL_VARIANTS="A=1 A=2,B=3": the same benchmark again (one run, no kernel table) under each
  # comma-separated set of environment assignments (an A/B of a code generator's knob in one call).
  for v in ${LINGC_WGSL_VARIANTS:-}; do
    echo "== variant $v, started $(date +%H:%M:%S.%N)"
    env ${v//,/ } node dist/bench-wgsl.mjs --checkpoint /tmp/m4 $RW --target-profile adapter --prompt 2048 --steps ${LINGC_WGSL_STEPS:-16} --runs 1 --fused-only
  done
  [ -n "${CLK:-}" ] && kill $CLK
  [ -n "${LINGC_SKIP_CUDA:-}" ] && exit 0
  echo "== CUDA, the same shape"
  $L compile /tmp/m4 --target cuda --out /tmp/m4c >/dev/null && (cd /tmp/m4c && make -j16 >/dev/null) && /tmp/m4c/lingc_model bench --random-weights --prefill 1x2048 --decode 1x2048 --repeats 5
  ;;
fp8bench)
  # FP8 against bf16, both lingc at this commit, on Ling-mini-2.0's sizes with random weights (the FP8
  # build quantizes them at load, W8A8 with dynamic activations); then cuBLASLt's block-scaled FP8 GEMM
  # and cuBLASLt bf16 alone on the model's projection shapes (the bar), and the expert GEMMs per expert.
  M=bench/cuda/ling-mini-2.0-no-mtp
  nvcc -O2 -std=c++17 -arch=sm_90a bench/cuda/fp8_gemm.cu -I$CUDA_LT/../include -L$CUDA_LT -lcublasLt -Xlinker -rpath=$CUDA_LT -o /tmp/fp8_gemm 2>&1 | grep error &
  $L compile $M --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j8 >/dev/null) &
  $L compile $M --target cuda --quantize fp8 --activation-scheme dynamic --dtype bf16 --out /tmp/mini8 >/dev/null && (cd /tmp/mini8 && make -j8 >/dev/null) &
  wait
  echo "== cuBLASLt alone on the projection shapes (prefill 1x8192: 8192 rows; decode batch 32: 32 rows)"
  # qkv, attention out, dense MLP gate/up and down, shared expert gate/up and down
  /tmp/fp8_gemm dense 8192 3072 2048 8192 2048 2048 8192 5120 2048 8192 2048 5120 8192 512 2048 8192 2048 512 32 3072 2048 32 2048 2048 32 5120 2048 32 2048 5120 32 512 2048 32 2048 512 | tee "$OUT/cublaslt.json"
  R=$(python3 -c "print(','.join(['256'] * 256))")
  /tmp/fp8_gemm experts 256 1024 2048 $R | tee -a "$OUT/cublaslt.json"
  /tmp/fp8_gemm experts 256 2048 512 $R | tee -a "$OUT/cublaslt.json"
  for v in mini mini8; do
    echo "== lingc $v"
    /tmp/$v/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode 1x2048,32x2048 --repeats 3 | tee "$OUT/bench-$v.json"
    /tmp/$v/lingc_model bench --random-weights --prefill 1x8192 --decode 1x2048 --repeats 1 --profile 2>"$OUT/profile-$v.txt" >/dev/null
  done
  ;;
flashwgmma)
  # Prefill attention on warpgroup MMAs (flash_wgmma, the sm_90a default: backends/kernels/gen/flash-attention-wgmma.ts)
  # under each of LINGC_FW_ENVS (default: LINGC_FLASH_WGMMA_PIPE=off and =on; e.g. LINGC_FLASH_WGMMA_WARPGROUPS=2)
  # against the interpreter on attention_check.py's four shapes, each sanitized, then Ling-mini prefill
  # built under each and with flash_tile (mini-ft, by preference) alternately, two rounds, and the
  # attention's per-kernel time.
  FW="--prefer attention:flash_wgmma"
  M=bench/cuda/ling-mini-2.0-no-mtp
  ENVS=(${LINGC_FW_ENVS:-LINGC_FLASH_WGMMA_PIPE=off LINGC_FLASH_WGMMA_PIPE=on}); BUILDS=()
  for n in "${!ENVS[@]}"; do BUILDS+=(mini-fw$n); ( env ${ENVS[$n]} $L compile $M --target cuda --out /tmp/mini-fw$n >/dev/null && cd /tmp/mini-fw$n && make -j5 >/dev/null ) & done
  BUILDS+=(mini-ft); ( $L compile $M --target cuda --prefer attention:flash_tile --out /tmp/mini-ft >/dev/null && cd /tmp/mini-ft && make -j5 >/dev/null ) &
  mkdir -p /tmp/ac && python3 bench/cuda/attention_check.py make /tmp/ac || exit 1
  R="/tmp/ac/a.lir --input /tmp/ac/x.safetensors"
  $L run $R --backend interp --out /tmp/ac/interp.safetensors >/dev/null || exit 1
  for n in "${!ENVS[@]}"; do
    env ${ENVS[$n]} timeout 180 $L run $R --backend cuda $FW --out /tmp/ac/fw$n.safetensors >/dev/null; rc=$?
    if [ $rc != 0 ]; then echo "flash_wgmma (${ENVS[$n]}) on the attention shapes: exit $rc (124: hung, cut)"; pkill -9 lingc_model; exit 1; fi
    echo "== flash_wgmma, ${ENVS[$n]} (mini-fw$n), vs interp"; python3 bench/cuda/attention_check.py compare /tmp/ac/fw$n.safetensors /tmp/ac/interp.safetensors 0.01
    EXE=$(ls -td /tmp/lingc-cache/cuda/*/ | head -1)lingc_model
    sanitized fw$n $EXE run --graph att --input /tmp/ac/x.safetensors --out /tmp/ac/s.safetensors
  done
  wait
  alternate 1x2048,1x8192 "" "${BUILDS[@]}"
  for m in "${BUILDS[@]}"; do echo "== $m profile 1x8192"; timeout 120 /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2>&1 >/dev/null | grep -m2 "attention"; done
  ;;
flashtile)
  # Prefill attention's tile program (flash_tile, the default: backends/kernels/gen/flash-attention.ts) and
  # the runtime's tiled kernels (attn_tiles) against the interpreter on four shapes (bench/cuda/attention_check.py:
  # d 128 GQA causal with a partial tile; d 64 transposed; batch 2 with S < T; d 64 MHA), sanitized, then
  # both on Ling-mini-2.0's prefill (speed, and the attention's per-kernel time).
  AT="--prefer attention:attn_tiles"
  attention_check make /tmp/ac "$AT" ft || exit 1
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j16 >/dev/null) || exit 1
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $AT --out /tmp/mini-at >/dev/null && (cd /tmp/mini-at && make -j16 >/dev/null) || exit 1
  for m in mini mini-at; do
    echo "== $m"
    /tmp/$m/lingc_model bench --random-weights --prefill 1x2048,1x8192 --decode "" --repeats 10 | grep seq
    /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode "" --repeats 1 --profile 2>&1 >/dev/null | grep -m2 "attention"
  done
  ;;
gemvtile)
  # Decode's bf16 GEMVs, generated from the kernel language by default (grouped_gemv_rows, grouped_gemv,
  # linear_gemv: backends/kernels/gen/grouped-gemv.ts) against the interpreter on decode-sized expert
  # modules (bench/cuda/expert_check.py: by row, T=1; by expert, T=2; column and step tails), sanitized;
  # ling-small (bf16) generating with them and with the runtime's GEMVs put back (--prefer
  # expert:expert_gemv,linear:gemv,dense_swiglu:gemv: the same lanes' sums in the same order; silu's exp is
  # the op table's expf where the runtime's is __expf: the same ids unless a near tie); decode attention
  # by the generated split form (the default up to 64 query rows): the golden ids; then Ling-mini decode
  # by default (mini), with the runtime's GEMVs (mini-rg) and with the runtime's decode attention
  # (mini-rd, --prefer attention:attn_decode), and per-kernel times at batch 32 of mini and mini-rg.
  RG="--prefer expert:expert_gemv,linear:gemv,dense_swiglu:gemv"
  RD="--prefer attention:attn_decode"
  for cfg in "1 512 264" "2 512 256" "8 2048 512"; do
    set -- $cfg; D=/tmp/gv$1; mkdir -p $D
    EXPERT_T=$1 EXPERT_H=$2 EXPERT_F=$3 python3 bench/cuda/expert_check.py make $D || exit 1
    R="$D/e.lir --weights $D/w.safetensors --input $D/e.safetensors"
    $L run $R --backend interp --out $D/interp.safetensors >/dev/null || exit 1
    $L run $R --backend cuda --out $D/gv.safetensors >/dev/null || exit 1
    echo "== T=$1 H=$2 F=$3: grouped_gemv vs interp"; python3 bench/cuda/expert_check.py compare $D/gv.safetensors $D/interp.safetensors 0.0156
    EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)
    sanitized gv$1 $EXE run --checkpoint $D/w.safetensors --graph e --input $D/e.safetensors --out $D/s.safetensors
  done
  GOT=$($L generate $G --backend cuda --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|')
  echo "attention_split: got  $GOT"; echo "attention_split: want $WANT"; [ "$GOT" = "$WANT" ] && echo "greedy_ids PASS" || echo "greedy_ids FAIL"
  S=tests/data/golden/ling-small
  A=$($L generate $S --backend cuda $RG --prompt "1,2,3,4,5;9,8,7" --max-new-tokens 8 | paste -sd'|'); B=$($L generate $S --backend cuda --prompt "1,2,3,4,5;9,8,7" --max-new-tokens 8 | paste -sd'|')
  echo "ling-small runtime GEMVs $A"; echo "ling-small kir GEMVs     $B"; [ -n "$A" ] && [ "$A" = "$B" ] && echo "same ids PASS" || echo "same ids FAIL"
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j16 >/dev/null) || exit 1
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $RG --out /tmp/mini-rg >/dev/null && (cd /tmp/mini-rg && make -j16 >/dev/null) || exit 1
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $RD --out /tmp/mini-rd >/dev/null && (cd /tmp/mini-rd && make -j16 >/dev/null) || exit 1
  for round in 1 2; do
    for m in mini mini-rg mini-rd; do
      echo "== $m, round $round"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048,32x2048 --repeats 10 | grep -o '"graph_ms_per_step": [0-9.]*'
    done
  done
  for m in mini mini-rg; do echo "== $m profile, decode 32x2048"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 32x2048 --repeats 2 --profile 2>&1 >/dev/null | grep -E "swiglu|grouped_linear|attention: linear|shared_experts|in all"; done
  ;;
decattn)
  # Decode attention's GQA form (decode_attention, the default for bf16 decode steps:
  # backends/kernels/gen/decode-attention.ts) and the runtime's attn_decode against the interpreter on
  # four decode shapes (bench/cuda/attention_check.py make-decode), sanitized; ling-small (bf16, its
  # cache grown in place) generating with each (not with LINGC_QUICK=1); then Ling-mini decode by default (mini), with
  # attn_decode (mini-rd) and, when carried, an earlier build (.gpu/mini-old), alternately, and the
  # attention's per-kernel times at batch 1 and 32.
  RD="--prefer attention:attn_decode"
  builds="mini mini-rd"
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j6 >/dev/null ) &
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $RD --out /tmp/mini-rd >/dev/null && cd /tmp/mini-rd && make -j6 >/dev/null ) &
  if [ -d .gpu/mini-old ]; then builds="$builds mini-old"; rm -rf /tmp/mini-old; cp -r .gpu/mini-old /tmp/mini-old; (cd /tmp/mini-old && make -j6 >/dev/null) & fi
  attention_check make-decode /tmp/dc "$RD" da || exit 1
  if [ -z "${LINGC_QUICK:-}" ]; then
    S=tests/data/golden/ling-small
    A=$($L generate $S --backend cuda --prompt "1,2,3,4,5;9,8,7" --max-new-tokens 8 | paste -sd'|'); B=$($L generate $S --backend cuda $RD --prompt "1,2,3,4,5;9,8,7" --max-new-tokens 8 | paste -sd'|')
    echo "ling-small decode_attention $A"; echo "ling-small attn_decode      $B"; [ -n "$A" ] && [ "$A" = "$B" ] && echo "same ids PASS" || echo "same ids FAIL"
  fi
  wait
  for round in 1 2; do
    for m in $builds; do
      echo "== $m, round $round"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048,32x2048 --repeats 10 | grep -o '"graph_ms_per_step": [0-9.]*'
    done
  done
  for m in mini mini-rd; do for sh in 1x2048 32x2048; do echo "== $m profile, decode $sh"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode $sh --repeats 2 --profile 2>&1 >/dev/null | grep -E "attention \(|\.attention|in all" | head -3; done; done
  ;;
routerwarp)
  # The router a warp per token (backends/kernels/gen/router-warp.ts, the default where it applies)
  # against the interpreter (bench/cuda/router_check.py: Ling-mini's router on 37 tokens; `lingc compare`:
  # the indices equal, the weights within 1e-4), sanitized; then Ling-mini with the workgroup router
  # (mini: --prefer router:router) and with the warp router (mini-rw), alternately: decode 1x2048 and 32x2048, prefill 1x8192, and the
  # router's per-kernel times.
  RW="--prefer router:router_warp"
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --prefer router:router --out /tmp/mini >/dev/null && cd /tmp/mini && make -j8 >/dev/null ) &
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $RW --out /tmp/mini-rw >/dev/null && cd /tmp/mini-rw && make -j8 >/dev/null ) &
  router_check $RW || exit 1
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)
  sanitized rw $EXE run --checkpoint /tmp/rt/w.safetensors --graph r --input /tmp/rt/x.safetensors --out /tmp/rt/s.safetensors
  wait
  for round in 1 2; do
    for m in mini mini-rw; do
      echo "== $m, round $round"; /tmp/$m/lingc_model bench --random-weights --prefill 1x8192 --decode 1x2048,32x2048 --repeats 10 | grep -o '"ms": [0-9.]*\|"graph_ms_per_step": [0-9.]*'
    done
  done
  for m in mini mini-rw; do for sh in "--prefill 1x8192 --decode ''" "--prefill '' --decode 1x2048"; do echo "== $m profile, $sh"; eval /tmp/$m/lingc_model bench --random-weights $sh --repeats 2 --profile 2>&1 >/dev/null | grep -E "router|in all" | head -2; done; done
  ;;
gemvsplit)
  # Decode's dense GEMVs (linear_gemv) with the K split among a tile's warps (GenLimits.gemvWorkgroups: two
  # workgroups an SM) and f32 rows (the router gate), against the interpreter (bench/cuda/gemv_check.py: Ling-
  # mini's dense linears on one row), with and without the split (LINGC_GEMV_WORKGROUPS=0), sanitized; the warp
  # router against the interpreter (router_check.py); ling-small generating by default and with the runtime's
  # GEMVs; the golden ids; then Ling-mini decode by default (mini), without the split (mini-ns) and with the
  # runtime's dense GEMVs (mini-rg), alternately, and the batch-1 per-kernel times of the linears.
  RG="--prefer linear:gemv,dense_swiglu:gemv"
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && cd /tmp/mini && make -j6 >/dev/null ) &
  ( LINGC_GEMV_WORKGROUPS=0 $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini-ns >/dev/null && cd /tmp/mini-ns && make -j5 >/dev/null ) &
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $RG --out /tmp/mini-rg >/dev/null && cd /tmp/mini-rg && make -j5 >/dev/null ) &
  D=/tmp/gc; mkdir -p $D && (cd bench/cuda && python3 gemv_check.py make $D) || exit 1
  R="$D/g.lir --weights $D/w.safetensors --input $D/x.safetensors"
  $L run $R --backend interp --out $D/interp.safetensors >/dev/null || exit 1
  LINGC_GEMV_WORKGROUPS=0 $L run $R --backend cuda --out $D/ns.safetensors >/dev/null || exit 1
  $L run $R --backend cuda --out $D/split.safetensors >/dev/null || exit 1
  echo "== linear_gemv, K split, vs interp"; (cd bench/cuda && python3 gemv_check.py compare $D/split.safetensors $D/interp.safetensors)
  echo "== linear_gemv, no split, vs interp"; (cd bench/cuda && python3 gemv_check.py compare $D/ns.safetensors $D/interp.safetensors)
  EXE=$(ls -td /tmp/lingc-cache/cuda/*/lingc_model | head -1)
  sanitized gemv $EXE run --checkpoint $D/w.safetensors --graph g --input $D/x.safetensors --out $D/s.safetensors
  router_check || exit 1
  GOT=$($L generate $G --backend cuda --prompt "$PROMPT" --max-new-tokens 6 | paste -sd'|')
  [ "$GOT" = "$WANT" ] && echo "golden greedy_ids PASS" || echo "golden greedy_ids FAIL: $GOT"
  S=tests/data/golden/ling-small
  A=$($L generate $S --backend cuda $RG --prompt "1,2,3,4,5;9,8,7" --max-new-tokens 8 | paste -sd'|'); B=$($L generate $S --backend cuda --prompt "1,2,3,4,5;9,8,7" --max-new-tokens 8 | paste -sd'|')
  echo "ling-small runtime GEMVs $A"; echo "ling-small kir GEMVs     $B"; [ -n "$A" ] && [ "$A" = "$B" ] && echo "same ids PASS" || echo "same ids DIFFER"
  wait
  for round in 1 2; do
    for m in mini mini-ns mini-rg; do
      echo "== $m, round $round"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048,32x2048 --repeats 10 | grep -o '"graph_ms_per_step": [0-9.]*'
    done
  done
  for m in mini mini-ns mini-rg; do echo "== $m profile, decode 1x2048"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 2 --profile 2>&1 >/dev/null | grep -E "linear|swiglu|in all"; done
  ;;
alt)
  # A/B of lingc builds (a constant changed: no knob for it in lingc): dist/lingc.mjs (mini) and each of
  # LINGC_ALT's (mini-alt1, mini-alt2, ...; carry them beside dist/lingc.mjs, which has the runtime sources:
  # e.g. LINGC_ALT="dist/lingc-alt1.mjs dist/lingc-alt2.mjs"; or env:VAR=VALUE, dist/lingc.mjs with a knob
  # of the generated kernels set, e.g. LINGC_ALT="env:LINGC_DECODE_SOFTMAX=key"). LINGC_ALT_CHECK=1 first runs the decode
  # attention shapes against the interpreter under each (attention_check make-decode, sanitized;
  # LINGC_ALT_CHECK=default: under the default build instead) and
  # LINGC_ALT_EXPERTS=1 the decode-sized expert modules (expert_check.py, T=1, 2, 32); always the warp router
  # against the interpreter (router_check.py); then Ling-mini decode 1x2048 and 32x2048 alternately, two
  # rounds, and per-kernel times at batch 32 of each and at batch 1 of mini.
  # LINGC_ALT_FP8=1: every build FP8 (W8A8, quantized at load).
  ALTS=(${LINGC_ALT:?LINGC_ALT names the other builds})
  BUILDS=(mini)
  Q=${LINGC_ALT_FP8:+--quantize fp8 --activation-scheme dynamic --dtype bf16}
  ( $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $Q --out /tmp/mini >/dev/null && cd /tmp/mini && make -j4 >/dev/null ) &
  # An entry env:VAR=VALUE is the default build compiled with that environment (a generated kernel's knob).
  altL() { case "$1" in env:*) echo "env ${1#env:} $L" ;; *) echo "node $1" ;; esac; }
  for n in "${!ALTS[@]}"; do
    m=mini-alt$((n + 1)); BUILDS+=($m)
    ( $(altL ${ALTS[$n]}) compile bench/cuda/ling-mini-2.0-no-mtp --target cuda $Q --out /tmp/$m >/dev/null && cd /tmp/$m && make -j4 >/dev/null ) &
  done
  router_check || exit 1
  if [ "${LINGC_ALT_CHECK:-0}" = default ]; then echo "=== the default build: decode attention"; attention_check make-decode /tmp/ad "" default; fi
  for n in "${!ALTS[@]}"; do
    A=$(altL ${ALTS[$n]})
    if [ "${LINGC_ALT_CHECK:-0}" = 1 ]; then echo "=== alt$((n + 1)): decode attention"; L="$A" attention_check make-decode /tmp/ad$n "" alt$((n + 1)); fi
    if [ "${LINGC_ALT_EXPERTS:-0}" = 1 ]; then
      for cfg in "1 2048 512" "2 2048 512" "32 2048 512"; do
        set -- $cfg; D=/tmp/ax$n-$1; mkdir -p $D
        EXPERT_T=$1 EXPERT_H=$2 EXPERT_F=$3 python3 bench/cuda/expert_check.py make $D || exit 1
        R="$D/e.lir --weights $D/w.safetensors --input $D/e.safetensors"
        $L run $R --backend interp --out $D/interp.safetensors >/dev/null || exit 1
        $A run $R --backend cuda --out $D/gv.safetensors >/dev/null || exit 1
        echo "== alt$((n + 1)) experts T=$1 H=$2 F=$3 vs interp"; python3 bench/cuda/expert_check.py compare $D/gv.safetensors $D/interp.safetensors 0.0156 | tail -1
      done
    fi
  done
  wait
  for round in 1 2; do
    for m in "${BUILDS[@]}"; do
      echo "== $m, round $round"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 1x2048,32x2048 --repeats 10 | grep -o '"graph_ms_per_step": [0-9.]*'
    done
  done
  for m in "${BUILDS[@]}"; do echo "== $m profile, decode 32x2048"; /tmp/$m/lingc_model bench --random-weights --prefill "" --decode 32x2048 --repeats 2 --profile 2>&1 >/dev/null | head -6; done
  echo "== mini profile, decode 1x2048"; /tmp/mini/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 2 --profile 2>&1 >/dev/null | head -24
  ;;
decsplit)
  # Decode attention's key split (runtime attn_decode: DEC_BLOCKS_PER_SM, tuned at batch 1, where the
  # keys' 32-row floor decides; at batch 32 it gives 1,024 blocks of 256 keys and ran at 0.7 TB/s):
  # the same Ling-mini build with the constant at each of LINGC_DEC_VARIANTS (default "2 8 32"), its
  # selftest (the decode attention cases), then decode 1x2048 and 32x2048 alternately, two rounds.
  # (Ling-mini's decode steps take the generated GQA forms by default: built with attn_decode preferred.)
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --prefer attention:attn_decode --out /tmp/mini >/dev/null || exit 1
  VARS=${LINGC_DEC_VARIANTS:-2 8 32}
  for n in $VARS; do
    rm -rf /tmp/dec$n && cp -r /tmp/mini /tmp/dec$n
    sed -i "s/^constexpr long DEC_BLOCKS_PER_SM = [0-9]*;/constexpr long DEC_BLOCKS_PER_SM = $n;/" /tmp/dec$n/lingc_runtime.cu
    grep -q "DEC_BLOCKS_PER_SM = $n;" /tmp/dec$n/lingc_runtime.cu || { echo "variant $n: the constant was not found"; exit 1; }
    (cd /tmp/dec$n && make -j16 >/dev/null 2>&1 || echo "variant $n: make failed") &
  done
  wait
  for n in $VARS; do echo "== DEC_BLOCKS_PER_SM=$n selftest"; /tmp/dec$n/lingc_model selftest 2>&1 | grep -E "attention \(decode|FAIL"; done
  for round in 1 2; do
    for n in $VARS; do echo "== DEC_BLOCKS_PER_SM=$n, round $round"; /tmp/dec$n/lingc_model bench --random-weights --prefill "" --decode 1x2048,32x2048 --repeats 10 | grep -o '"graph_ms_per_step": [0-9.]*'; done
  done
  ;;
profile)
  # Per-kernel times (events between launches, no CUDA graph) of one prefill and of one decode step.
  $L compile bench/cuda/ling-mini-2.0-no-mtp --target cuda --out /tmp/mini >/dev/null && (cd /tmp/mini && make -j16 >/dev/null) || exit 1
  /tmp/mini/lingc_model bench --random-weights --prefill 1x8192 --decode 1x2048 --repeats 2 --profile 2>"$OUT/profile.txt" >/dev/null
  # GPU-side time of each kernel of a decode step (no host gaps), from Nsight Compute.
  # (slow: only with LINGC_NCU=1; clocks and caches left as they run)
  if [ -n "${LINGC_NCU:-}" ] && [ -x /usr/local/cuda/bin/ncu ]; then
    /usr/local/cuda/bin/ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --launch-count 1400 /tmp/mini/lingc_model bench --random-weights --prefill "" --decode 1x2048 --repeats 1 > "$OUT/ncu-decode.csv" 2>/dev/null; echo "ncu exit $?"
    python3 bench/cuda/ncu_step.py "$OUT/ncu-decode.csv" | tee "$OUT/ncu-step.txt" | head -20
  fi
  ;;
esac
