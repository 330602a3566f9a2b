#!/usr/bin/env bash
# The prepared GPU check (issue 35): what a machine with a CUDA GPU runs in under 10 minutes.
# CI never has a GPU; a session lent one runs this and puts the numbers in docs/measurements/.
#   usage: bash benchmarks/gpu_check.sh [OUT]   (in the repo root, the package installed)
# 1. the sample sweep (x265, vvenc, Diff-SIT, 9 frames) with --device cuda: every job done;
# 2. a Diff-SIT stream encoded on the CPU decodes on CUDA to the same x~ (per-frame MD5s of
#    x~, printed by `diffsit decode -v`), and the other way round;
# 3. Diff-SIT at 1080p with the Wan2.1-1.3B-shaped preset: encode/decode time and peak memory
#    (`python -m diffsit fullscale --device cuda`, ODFTE in bf16, 24 frames to stay in time).
set -euo pipefail
out="${1:-${OUT:-$(mktemp -d)}}"
mkdir -p "$out"
py="${PYTHON:-python}"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU here: this check needs one")'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

echo "== 1. sample sweep on CUDA" >&2
start=$(date +%s)
"$py" -m bench run --codec x265,vvenc,diffsit --dataset sample --frames 9 --device cuda --jobs 1 --out "$out/sweep" --quiet
echo "sweep: $(( $(date +%s) - start )) s" | tee "$out/times.txt"

echo "== 2. x~ across devices" >&2
clip="$("$py" -c 'from bench.datasets import DATASETS; print({s.name: s for s in DATASETS["sample"].resolve(None)}["carphone"].path)')"
for enc in cpu cuda; do
    "$py" -m diffsit encode "$clip" -o "$out/carphone-$enc.dsit" --model tiny-lambda1 --frames 9 --device "$enc"
    for dec in cpu cuda; do
        "$py" -m diffsit decode "$out/carphone-$enc.dsit" -o "$out/dec-$enc-$dec.yuv" --device "$dec" -v | grep -io 'md5[^ ]* *[0-9a-f]\{32\}' >"$out/xtilde-$enc-$dec.txt"
    done
    cmp "$out/xtilde-$enc-cpu.txt" "$out/xtilde-$enc-cuda.txt"
    cmp "$out/carphone-cpu.dsit" "$out/carphone-$enc.dsit" || echo "note: the $enc encode's stream differs from the CPU's" | tee -a "$out/times.txt"
done
echo "x~ MD5s equal across CPU and CUDA decodes ($(wc -l <"$out/xtilde-cpu-cpu.txt") frames)" | tee -a "$out/times.txt"

echo "== 3. 1080p, Wan2.1-1.3B shapes" >&2
"$py" -m diffsit fullscale --device cuda --dtype bf16 --frames 24 --out "$out/fullscale.json"
cat "$out/fullscale.json"
echo "GPU check done: $out" >&2
