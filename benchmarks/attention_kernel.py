"""Why PromptLM trains eagerly on the CPU: one training step of MiniLM (bf16 under autocast, LoRA on query and
value) at batch 32 and prompt lengths T, under SDPA with the model's attention dropout (as the SFT trained
before), eagerly with the same dropout (what it does now), under SDPA without any dropout, and (`--kernels`) eagerly without any (sft.lm_dropout=0 trains under SDPA).

Each (kernel, T) runs in its own process, so that its peak RSS is its own: three forward + backward steps on
random prompt embeddings, the first untimed. The epoch-level effect on real prompts is
`python -m benchmarks.text_cost --kernels auto own`.

    python -m benchmarks.attention_kernel --lengths 128 256 512 --threads 1

Writes benchmarks/results/attention-kernel-minilm.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, command, provenance, write_json

KERNELS = {"sdpa+dropout": ("sdpa", True), "eager+dropout": ("eager", True), "sdpa, no dropout": ("sdpa", False),
           "eager, no dropout": ("eager", False)}


def probe(kernel: str, dropout: bool, batch: int, length: int, threads: int, model: str = "minilm-l6") -> dict:
    """One (kernel, T) in this process: step seconds and peak RSS."""
    import torch
    from peft import LoraConfig, get_peft_model

    from stages.lm.load import load_lm, quiet_transformers
    from stages.lm.precision import autocast_forward

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lm, _ = load_lm(model, precision="bf16", offline=True)
    with quiet_transformers():
        lm.set_attn_implementation(kernel)
        if not dropout:
            for m in lm.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
        lm = get_peft_model(lm, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))   # BERT names
    autocast_forward(lm, torch.bfloat16)
    lm.train()
    x = torch.randn(batch, length, lm.config.hidden_size, requires_grad=True)     # (B, T, H)
    mask = torch.ones(batch, length, dtype=torch.long)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = []
    for _ in range(3):
        t = time.perf_counter()
        out = lm(inputs_embeds=x, attention_mask=mask)
        (out[0] if isinstance(out, tuple) else out.last_hidden_state)[:, 0].float().sum().backward()
        seconds.append(time.perf_counter() - t)
    return {"step_seconds": seconds[1:], "first_step_seconds": seconds[0],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_steps_mb": rss_before}


def summarize(rows: list[dict]) -> list[dict]:
    """Each row's median step and its time and memory against SDPA + dropout at the same length (in place)."""
    for r in rows:
        r["step_seconds_median"] = statistics.median(r["step_seconds"])
    for r in rows:
        ref = next((o for o in rows if o["length"] == r["length"] and o["kernel"] == "sdpa+dropout"), None)
        r["seconds_ratio_vs_sdpa_dropout"] = None if ref is None else r["step_seconds_median"] / ref["step_seconds_median"]
        r["rss_ratio_vs_sdpa_dropout"] = None if ref is None else r["peak_rss_mb"] / ref["peak_rss_mb"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm-l6", help="a BERT-style encoder with attention dropout")
    ap.add_argument("--lengths", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--kernels", nargs="+", choices=list(KERNELS), default=list(KERNELS)[:3])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "attention-kernel-minilm.json")
    ap.add_argument("--probe", nargs=2, default=None, help=argparse.SUPPRESS)   # KERNEL_NAME T: the child process
    args = ap.parse_args()
    if args.probe:
        kernel, dropout = KERNELS[args.probe[0]]
        print(json.dumps(probe(kernel, dropout, args.batch, int(args.probe[1]), args.threads, args.model)))
        return
    t0, load = time.perf_counter(), os.getloadavg()[0]
    rows = []
    for length in args.lengths:
        for name in args.kernels:
            out = subprocess.run([sys.executable, "-m", "benchmarks.attention_kernel", "--probe", name, str(length),
                                  "--batch", str(args.batch), "--threads", str(args.threads), "--model", args.model],
                                 capture_output=True, text=True, check=True)
            rows.append({"kernel": name, "batch": args.batch, "length": length, **json.loads(out.stdout.splitlines()[-1])})
            print(f"T={length} {name}: {statistics.median(rows[-1]['step_seconds']):.2f} s/step, "
                  f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MiB", file=sys.stderr)
    summarize(rows)
    write_json(args.out, {"benchmark": "attention-kernel-minilm", "command": command(), **provenance(threads=args.threads),
                          "model": args.model, "precision": "bf16 (autocast)", "load_avg_1m_before": load,
                          "load_avg_1m_after": os.getloadavg()[0], "rows": rows,
                          "wall_seconds": round(time.perf_counter() - t0, 1)})
    print(args.out)


if __name__ == "__main__":
    main()
