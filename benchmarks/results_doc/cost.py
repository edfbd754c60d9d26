"""Blocks for the cost of the language-model stage: the SFT and augment runs of each chain, TSLRec's SFT
epoch against E4SRec's, SFT epochs by LM, shared-prefix KV reuse, and the core stages."""
from __future__ import annotations

from typing import Callable

from .load import Results, caption
from .tables import DATASET_NAMES, secs, table


def llm_stage_block(files: dict[str, str]) -> Callable[[Results], str]:
    """The sft and augment runs of each dataset's Table 2 chain: seconds, validation MSE, C1-C3."""
    def block(r: Results) -> str:
        rows = []
        for label, name in files.items():
            up = r(name)["upstream"]
            sft, aug = up["sft"]["result"], up["augment"]["result"]
            rows.append([label, sft["model"], f"{sft['instances_per_epoch']:,}", secs(sft["seconds_per_epoch"]),
                         f"{sft['valid_mse']:.4f} / {sft['valid_mse_mean_baseline']:.4f}", secs(aug["seconds"]),
                         " / ".join(f"{aug[c]:.1%}" for c in ("c1", "c2", "c3"))])
        return ("**The language-model stages in each Table 2 chain** (one SFT epoch; validation MSE against always "
                "predicting the mean distribution; C1-C3 as in the paper's Fig. 4)\n\n" +
                table(["chain", "LM", "SFT instances", "SFT epoch", "valid MSE / mean baseline", "augment", "C1 / C2 / C3"], rows) +
                "\n\n" + caption(r, *files.values(), command=False) + " Seconds: 1 torch thread beside another job.\n")
    return block


def efficiency_block(pattern: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        rows, names = [], r.names(pattern)
        for n in names:
            d = r(n)
            t, e = d["tslrec"], d["e4srec"]
            ratio = d["ratio_e4srec_over_tslrec"]
            rows.append([DATASET_NAMES.get(d["data"]["dataset"], d["data"]["dataset"]),
                         f"{secs(t['train_epoch']['seconds_extrapolated'])} ({t['train_epoch']['instances']:,})",
                         f"{secs(e['train_epoch']['seconds_extrapolated'])} ({e['train_epoch']['instances']:,})",
                         f"{ratio['train_epoch_seconds']:.1f}x", f"{ratio['train_instances']:.1f}x",
                         f"{secs(t['inference']['seconds_extrapolated'])} / {secs(e['inference']['seconds_extrapolated'])}"])
        d0 = r(names[0])
        return ("**One LLM training epoch, TSLRec vs E4SRec** (same LM, " + str(d0["model"]["name"]) +
                f", {d0['model']['threads']} thread, fp32; seconds extrapolated from sampled steps, instance counts exact)\n\n" +
                table(["dataset", "TSLRec epoch (instances)", "E4SRec epoch (instances)", "time ratio", "instance ratio",
                       "inference TSLRec / E4SRec"], rows) + "\n\n" + caption(r, *names) + "\n")
    return block


def prefix_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        rows = []
        for key, label in (("train_step", "SFT training epoch"), ("item_inference", "one-item inference (augment)")):
            x = d[key]
            rows.append([label, secs(x["plain"]["seconds_extrapolated"]), secs(x["shared"]["seconds_extrapolated"]),
                         f"{x['speedup']:.2f}x"])
        m = d["model"]
        return (f"**Shared-prefix KV reuse** ({m['name']}, {m.get('num_layers')} layers, prefix of {m.get('prefix_len')} tokens, "
                f"Beauty; seconds extrapolated)\n\n" + table(["", "plain", "shared prefix", "speed-up"], rows) +
                f"\n\nLargest difference of a hidden state between the two paths: {d['max_abs_diff_h']:.1e} "
                f"(largest value {d['h_abs_max']:.1f}). " + caption(r, name) + "\n")
    return block


def sft_epoch_block(pattern: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        rows, names = [], r.names(pattern)
        for n in names:
            d = r(n)
            rows.append([d["model"], d["threads"], "yes" if d.get("shared_prefix") else "no",
                         secs(d["train_epoch"]["seconds_extrapolated"]), f"{d['train_epoch']['measured_steps']} of {d['train_epoch']['steps_total']}",
                         secs(d["augment_pass"]["seconds_extrapolated"]), f"{d['machine'].get('load_avg_1m', 0):.1f}"])
        return ("**An SFT epoch and an augment pass on Beauty, by LM** (seconds extrapolated from sampled steps)\n\n" +
                table(["LM", "threads", "shared prefix", "SFT epoch", "steps timed", "augment pass", "load average"], rows) +
                "\n\n" + caption(r, *names) + "\n")
    return block


def core_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        s, a, o = d["sft"], d["augment"], d["overhead_subset"]
        rows = [["SFT epoch, full Beauty", secs(s["seconds_per_epoch"]), f"{s['instances_per_epoch']:,} users",
                 f"valid MSE {s['valid_mse']:.4f} vs {s['valid_mse_mean_baseline']:.4f} for the mean"],
                ["augment, full Beauty", secs(a["seconds"]), "12,101 items",
                 "C1 / C2 / C3 " + " / ".join(f"{a[c]:.1%}" for c in ("c1", "c2", "c3"))],
                ["pipeline SFT vs a bare loop, 500-user subset", f"{o['pipeline_seconds']:.1f} s vs {o['raw_seconds']:.1f} s",
                 f"{o['steps']} steps", f"ratio {o['ratio']:.3f} (median step {o['median_step_ratio']:.3f})"]]
        return ("**Core stages, MiniLM-L6, fp32** (the stages of an early `run all`, history unmasked)\n\n" +
                table(["what", "seconds", "size", "quality / overhead"], rows) + "\n\n" + caption(r, name, command=False) + "\n")
    return block
