#!/usr/bin/env bash
# What CPU CI cannot run, in one short pass on one GPU (under 8 minutes on an H100/H200):
#   bf16 autocast training steps of a token and a pixel ViT, --compile, a one-GPU NCCL process group,
#   tokenizer training and encoding on the GPU, `seit bench pipeline` and `seit bench train` (token vs pixel
#   steps/s at ViT-S size, batch 256).
# Each step's log and figures go to $OUT (default: ./gpu-check); bench figures as JSON, for BENCHMARKS.md.
# DRY_RUN=1 only parses every seit command line with the real parser (no GPU, no data; what CI checks).
set -euo pipefail

OUT=${OUT:-gpu-check}
PYTHON=${PYTHON:-python}
DRY_RUN=${DRY_RUN:-0}
WORK="$OUT/work"
mkdir -p "$OUT" "$WORK"

# seit NAME ARGS...: run `seit ARGS` (log in $OUT/NAME.log), or in a dry run only parse ARGS
seit() {
    local name=$1
    shift
    if [[ $DRY_RUN == 1 ]]; then
        "$PYTHON" -c 'import sys; from seit.cli import build_parser; build_parser().parse_args(sys.argv[1:])' "$@"
        echo "parsed: seit $*"
        return
    fi
    echo "== $name: seit $*"
    local start=$SECONDS
    "$PYTHON" -m seit "$@" 2>&1 | tee "$OUT/$name.log"
    echo "$name: $((SECONDS - start)) s" | tee -a "$OUT/timings.txt"
}

export SEIT_NO_PROGRESS=1
DEMO="$WORK/demo"
STORES="$DEMO/stores"

# data: the demo's tiny size draws images, trains a tokenizer and writes token stores in seconds
seit demo demo --size tiny --device cuda --output "$DEMO"

TRAIN_COMMON=(--epochs 1 --max-steps 30 --batch-size 64 --num-workers 4 --device cuda --amp bf16 --log-every 10)
# bf16 autocast steps: the token ViT-S, then the pixel ViT-S
seit train-token-bf16 train --store "$STORES/train" --val-store "$STORES/val" --model deit_small_token_32 \
    "${TRAIN_COMMON[@]}" --output "$WORK/token-bf16" --restart
seit train-pixel-bf16 train --images "$DEMO/data/train" --val-images "$DEMO/data/val" \
    --model deit_small_pixel_16 --image-size 224 "${TRAIN_COMMON[@]}" --output "$WORK/pixel-bf16" --restart
# torch.compile on the GPU
seit train-token-compile train --store "$STORES/train" --model deit_small_token_32 --compile \
    "${TRAIN_COMMON[@]}" --output "$WORK/token-compile" --restart

# a one-GPU NCCL process group: init, all_reduce, barrier, destroy (torchrun sets RANK/WORLD_SIZE)
cat > "$WORK/nccl_check.py" <<'PY'
import torch
import torch.distributed as dist

torch.cuda.set_device(0)
dist.init_process_group("nccl")
x = torch.ones(4, device="cuda")
dist.all_reduce(x)
dist.barrier()
assert x.sum().item() == 4, x
print("nccl: init, all_reduce, barrier ok on", torch.cuda.get_device_name(0))
dist.destroy_process_group()
PY
if [[ $DRY_RUN == 1 ]]; then
    "$PYTHON" -m py_compile "$WORK/nccl_check.py" && echo "parsed: nccl check"
else
    "$PYTHON" -m torch.distributed.run --nproc-per-node 1 --master-port 29561 "$WORK/nccl_check.py" 2>&1 \
        | tee "$OUT/nccl.log"
fi

# tokenizer training steps and encoding on the GPU (bf16)
seit tokenizer-train tokenizer train "$DEMO/data/train" --preset vitvq-tiny --steps 50 --batch-size 32 \
    --device cuda --amp bf16 --num-workers 4 --output "$WORK/tokenizer" --restart
seit tokenize tokenize "$DEMO/data/val" --tokenizer "$DEMO/tokenizer/tokenizer.safetensors" --device cuda \
    --amp bf16 --batch-size 256 --output "$WORK/tokens-val" --restart

# benchmarks on the GPU at ViT-S size, batch 256
seit bench-pipeline bench pipeline --batch-size 256 --json "$OUT/bench-pipeline.json"
seit bench-train bench train --token-model deit_small_token_32 --pixel-model deit_small_pixel_16 \
    --batch-size 256 --device cuda --amp bf16 --json "$OUT/bench-train.json"

echo "gpu check done: figures in $OUT"
