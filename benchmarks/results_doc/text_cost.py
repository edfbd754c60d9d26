"""Blocks for what item text costs: the SFT's epoch at each text budget against none (`text-budget-*.json`,
`text-cost-*.json`), the attention kernel it trains with (`attention-kernel-minilm.json`), and `run all` with
titles from a cold cache (`run-all-beauty-title.json`)."""
from __future__ import annotations

from typing import Any, Callable

from .load import REL, Results, caption
from .tables import DATASET_NAMES, f4, secs, table


def _epoch_seconds(x: dict[str, Any] | None) -> float | None:
    return None if x is None else x.get("seconds_per_epoch_extrapolated", x.get("seconds_per_epoch"))


NODROP_TITLE = "Which kernel without dropout (sft.lm_dropout=0): eager on short prompts, SDPA on long ones"
DRAWS = {"fast": "16 random bits an element (the stage's, stages/lm/dropout.py)", "torch": "torch's bernoulli_ (before)"}
ATTENTION = {"auto": "eager (the stage's, on the CPU)", "own": "SDPA (the model's own, as before)"}


def attention_kernel_block(name: str = "attention-kernel-minilm.json",
                           title: str = "Why the SFT attends eagerly on the CPU") -> Callable[[Results], str]:
    """One training step of the LM per attention kernel and prompt length: seconds and peak memory."""
    def block(r: Results) -> str:
        if not r.has(name):
            return ""
        d = r(name)
        ratio = lambda v: "-" if v is None else f"{v:.2f}x"   # noqa: E731
        rows = [[x["kernel"], x["length"], f"{x['step_seconds_median']:.2f}", ratio(x["seconds_ratio_vs_sdpa_dropout"]),
                 f"{x['peak_rss_mb'] / 1024:.1f}", ratio(x["rss_ratio_vs_sdpa_dropout"])] for x in d["rows"]]
        return (f"**{title}** ({d.get('model')}, batch {d['rows'][0]['batch']}, one training "
                "step on random prompts, each kernel and length in its own process)\n\n" +
                table(["kernel", "prompt length T", "seconds per step", "vs SDPA + dropout", "peak RSS (GiB)",
                       "vs SDPA + dropout"], rows) + "\n\n" + caption(r, name) + "\n")
    return block


def text_cost_block(patterns: tuple[str, ...] = ("text-budget-*.json", "text-cost-*.json")) -> Callable[[Results], str]:
    """The SFT's cost with item text at each budget against none (a `rows` list, or `runs` in text_budget.py's files)."""
    def block(r: Results) -> str:
        names = [n for p in patterns for n in r.names(p)]
        if not names:
            return f"**What item text costs the SFT**: no {' or '.join(f'`{p}`' for p in patterns)} committed yet.\n"
        out = []
        for n in names:
            d = r(n)
            runs = d.get("rows") or d.get("runs") or []
            none_run = next((x for x in runs if x.get("item_text") == "none"), None)
            none = None if none_run is None or none_run.get("cached") else _epoch_seconds(none_run)
            mse = any(x.get("valid_mse") is not None for x in runs)
            pos = any(x.get("mean_positions") is not None for x in runs)   # text_cost.py's exact prompt positions
            att = len({x.get("attention") for x in runs} - {None}) > 1         # text_cost.py --kernels auto own
            drop = len({x.get("lm_dropout") for x in runs}) > 1               # text_cost.py --lm-dropouts
            draws = len({x.get("dropout_draws") for x in runs} - {None}) > 1    # text_cost.py --dropout-draws
            rows = []
            for x in runs:
                s = _epoch_seconds(x)
                # a cache hit's seconds were timed by another process, under other load: no ratio across the two
                ratio = x.get("ratio_vs_none", s / none if s is not None and none and not x.get("cached") else None)
                shown = x.get("mean_items_shown")
                own = x.get("ratio_vs_own_attention")
                vs_model = x.get("ratio_vs_lm_dropout_model")
                vs_torch = x.get("ratio_vs_torch_draws")
                rows.append([x.get("item_text", "-"), x.get("item_text_tokens") or "-"] +
                            ([DRAWS.get(x.get("dropout_draws"), "-"), "-" if vs_torch is None else f"{vs_torch:.2f}x"] if draws else []) +
                            ([x.get("lm_dropout"), "-" if vs_model is None else f"{vs_model:.2f}x"] if drop else []) +
                            ([ATTENTION.get(x.get("attention"), "-"), "-" if own is None else f"{own:.2f}x"] if att else []) +
                            [secs(s) + (" (cached: timed by an earlier run)" if x.get("cached") else ""),
                             "-" if ratio is None else f"{ratio:.2f}x", "-" if shown is None else f"{shown:.2f}"] +
                            ([f"{x['mean_positions']:.1f} ({x.get('positions_ratio_vs_none', 1.0):.2f}x)"] if pos else []) +
                            ([f"{f4(x.get('valid_mse'))} / {f4(x.get('valid_mse_mean_baseline'))}"] if mse else []))
            ds = d.get("dataset", "")
            method = f" Method: {d['method']}." if d.get("method") else ""
            out.append(f"**What item text costs the SFT, {DATASET_NAMES.get(ds, ds)}** ({d.get('model', 'the default LM')}; "
                       f"`{n}`)\n\n" +
                       table(["item_text", "item_text_tokens"] + (["dropout masks", "time vs torch's"] if draws else []) +
                             (["sft.lm_dropout", "time vs 'model'"] if drop else []) +
                             (["attention in training", "time vs SDPA"] if att else []) +
                             ["seconds per epoch", "ratio vs none (same attention)" if att else
                              "ratio vs none (same lm_dropout)" if drop else
                              "ratio vs none (same masks)" if draws else "ratio vs none", "mean items shown"] +
                             (["prompt positions (vs none)"] if pos else []) +
                             (["valid MSE / mean baseline"] if mse else []), rows) + "\n\n" + caption(r, n) + method + "\n")
        return "\n".join(out)
    return block


def run_all_text_block(name: str = "run-all-beauty-title.json", jobs: int | None = None,
                       again: bool = False) -> Callable[[Results], str]:
    """`run all` with item text from a cold cache against its time bound (benchmarks/run_all_time.py); with
    `jobs`, the file of the run under `--jobs N`, with `again` a repeat of the same command (either: nothing while
    its file does not exist)."""
    def block(r: Results) -> str:
        title = ("`tslrec run all --dataset beauty --set sft.item_text=title" + (f" --jobs {jobs}" if jobs else "")
                 + "` from a cold cache" + (", again" if again else ""))
        if not r.has(name):
            return "" if jobs or again else f"**{title}**: not measured yet (no `{REL}/{name}`).\n"
        d = r(name)
        epochs = d.get("stage_epochs") or {}

        def took(k: str, v: float) -> str:
            e = epochs.get(k) or {}
            per = f"{secs(e['seconds_per_epoch'])}/epoch" if e.get("seconds_per_epoch") is not None else ""
            n = f"{e['epochs_run']} epochs at " if e.get("epochs_run") is not None else ""
            return f"{k} {secs(v)}" + (f" ({n}{per})" if per else "")
        stages = ", ".join(took(k, v) for k, v in (d.get("stage_seconds") or {}).items())
        if d.get("stopped_at_limit"):
            said = (f"not within {secs(d['limit_s'])}: stopped at {secs(d['wall_s'])} while still in `{d.get('stage_at_limit')}`"
                    f" (stages finished: {stages or 'none'})")
        else:
            said = f"{secs(d['wall_s'])}, {'within' if d.get('within_limit') else 'over'} {secs(d['limit_s'])} ({stages})"
            if d.get("train_workers"):
                said += f"; the train runs trained at once in {d['train_workers']} worker processes, so their seconds overlap"
            for stage, ranks in (d.get("data_parallel") or {}).items():
                said += f"; the {stage} trained data-parallel in {ranks} rank processes"
        return f"**{title}**: {said}.\n\n" + caption(r, name) + "\n"
    return block


def lm_dropout_block(name: str = "lm-dropout-beauty.json") -> Callable[[Results], str]:
    """sft.lm_dropout: the LM's own dropout against 0, per item-text setting: the SFT's held-out MSE and cost,
    and the setting's SASRec cell on validation and test (benchmarks/lm_dropout.py)."""
    def block(r: Results) -> str:
        if not r.has(name):
            return ""
        d = r(name)
        out = []
        for setting, s in d.get("settings", {}).items():
            rows = []
            for rate in d["rates"]:
                sft, cell = s["sft"].get(rate), s["cells"].get(rate)
                ms = lambda m: "-" if cell is None else f"{cell[m]['mean']:.4f} ± {cell[m]['std']:.4f}"   # noqa: E731
                rows.append([rate, "-" if sft is None else f"{f4(sft['valid_mse'])} / {f4(sft['valid_mse_mean_baseline'])}",
                             "-" if sft is None else secs(sft["seconds_per_epoch"]),
                             "-" if sft is None or sft.get("peak_rss_mb") is None else f"{sft['peak_rss_mb'] / 1024:.1f}",
                             "-" if cell is None else cell["n_seeds"], ms("valid_ndcg10"), ms("test_ndcg10")])
            c = s["cell"]
            p = lambda k: "-" if s.get(k) is None else f"{s[k]:.3g}"   # noqa: E731
            said = (f"chosen on validation: `{s['choice_on_valid']}` (p = {p('p_valid')} on validation, {p('p_test')} on test)"
                    if s.get("choice_on_valid") else "no choice yet: the two rates lack the same seeds")
            ratio = f"; SFT time {s['sft_seconds_ratio']:.2f}x" if s.get("sft_seconds_ratio") and not d.get("sft_seconds_note") else ""
            out.append(f"**The LM's own dropout in the SFT, item text `{setting}`** (SASRec `{c['fusion']}` on "
                       f"`{c['source']}`; {said}{ratio})\n\n" +
                       table(["sft.lm_dropout", "SFT valid MSE / mean baseline", "SFT seconds per epoch", "SFT peak RSS (GiB)",
                              "seeds", "valid NDCG@10", "test NDCG@10"], rows))
        note = f" {d['sft_seconds_note']}" if d.get("sft_seconds_note") else ""
        return "\n\n".join(out) + "\n\n" + caption(r, name) + note + "\n"
    return block


def dropout_draws_block(name: str = "dropout-draws-beauty.json") -> Callable[[Results], str]:
    """The SFT's held-out MSE per seed with the stage's fast dropout masks and with torch's (benchmarks/dropout_draws.py)."""
    def block(r: Results) -> str:
        if not r.has(name):
            return ""
        d = r(name)
        by = {(x["seed"], x["draws"]): x for x in d["rows"]}
        rows = [[seed] + [f"{f4(by[seed, k]['valid_mse'])} ({secs(by[seed, k]['seconds_per_epoch'])})" if (seed, k) in by
                          else "-" for k in ("fast", "torch")] for seed in d["seeds"]]
        s = d.get("summary", {})
        mean = lambda k: "-" if k not in s else f"{s[k]['valid_mse_mean']:.4f} ± {s[k]['valid_mse_std']:.4f}"   # noqa: E731
        rows.append(["mean ± std", mean("fast"), mean("torch")])
        p, paired, ratio = s.get("p_valid_mse"), s.get("p_valid_mse_paired"), s.get("seconds_ratio_fast_vs_torch")
        said = (f"p = {p:.2g} (t-test over seeds)" if p is not None else "no t-test") + \
               (f", paired by seed p = {paired:.2g}" if paired is not None else "") + \
               (f"; SFT epoch {ratio:.2f}x torch's (medians)" if ratio else "")
        return (f"**The SFT's dropout masks: fast against torch's** ({DATASET_NAMES.get(d['dataset'], d['dataset'])}, "
                f"no item text, the held-out users' MSE and the epoch's seconds per `sft.seed`; {said})\n\n" +
                table(["sft.seed", "fast masks (the stage's)", "torch's bernoulli_"], rows) + "\n\n" + caption(r, name) + "\n")
    return block
