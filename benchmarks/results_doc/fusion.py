"""Blocks for the fusion and item-table question beyond the generic cells table: other frozen tables, Caser
on SASRec's table, the item-to-item probe, the settings tried, and what the SFT target counts."""
from __future__ import annotations

from typing import Callable

from .experiments import summary_of
from .load import Results, caption, commits
from .tables import BACKBONE_NAMES, DATASET_NAMES, VARIANTS, f4, table


def fusion_source_block(name: str, base_file: str, base_backbone: str, title: str) -> Callable[[Results], str]:
    """benchmarks/fusion_source.py: the tslrec variant on other frozen tables, per seed, next to Base."""
    def block(r: Results) -> str:
        d = r(name)
        base_runs = {x["seed"]: x["test"]["ndcg10"] for x in r(base_file)["backbones"][base_backbone]["runs"]} \
            if "backbones" in r(base_file) else {}
        rows = []
        for label, x in d["runs"].items():
            rows.append([x["source"], x["seed"], f4(x["test"]["ndcg10"]), f4(x["test"]["hr10"]), f4(x.get("valid_ndcg10")),
                         x.get("best_epoch", "-"), f4(base_runs.get(x["seed"]))])
        rows.sort(key=lambda row: (str(row[0]), row[1]))
        cfg = d.get("train_config", {})
        return (f"**{title}** ({cfg.get('variant')} variant, fusion {cfg.get('fusion')}, backbone "
                f"{BACKBONE_NAMES.get(cfg.get('backbone', {}).get('name'), '?')}; test, history masked)\n\n" +
                table(["frozen table", "seed", "test NDCG@10", "test HR@10", "valid NDCG@10", "best epoch",
                       f"Base, same seed ({base_file})"], rows) + "\n\n" + caption(r, name, base_file) + "\n")
    return block


def caser_source_block(name: str, ref: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d, e = r(name), r(ref)
        rows = []
        for v in VARIANTS:
            s = summary_of(e, "caser", v)
            if s:
                rows.append([f"{v} ({'enhanced embeddings' if v == 'tslrec' else 'no frozen table' if v == 'base' else 'categories'})",
                             f4(s["mean"]["ndcg10"]), f4(s["mean"]["hr10"])])
        for x in d["runs"].values():
            rows.append([f"tslrec on SASRec's {x['source']} table", f4(x["test"]["ndcg10"]), f4(x["test"]["hr10"])])
        return ("**Caser fed SASRec's pretrain table** (seed 42, one seed, test, history masked)\n\n" +
                table(["Caser", "NDCG@10", "HR@10"], rows) + "\n\n" + caption(r, name, ref) + "\n")
    return block


def probe_block(pattern: str) -> Callable[[Results], str]:
    """benchmarks/embedding_probe.py: score items by their dot product with the user's last item (a probe a
    file lacks is '-')."""
    def block(r: Results) -> str:
        names = r.names(pattern)
        keys: list[str] = []
        for n in names:
            keys += [k for k in r(n)["probes"] if k not in keys]
        rows = []
        for n in names:
            d = r(n)
            sft = d.get("sft", {})
            text = f", item text {sft['item_text']}" if sft.get("item_text", "none") != "none" else ""
            setting = f"{sft.get('model')}, K={d.get('k')}, LoRA r={sft.get('lora_r') or 'task default'}, " \
                      f"{sft.get('precision', 'fp32')}{text}"
            pr = d["probes"]
            rows.append([f"`{n}`", setting] + [f4(pr[k]["ndcg10"]) if k in pr else "-" for k in keys] +
                        [", ".join(commits(d))])
        return ("**Item-to-item probe** (test NDCG@10 of ranking items by their dot product with the user's last training "
                "item, Beauty)\n\n" + table(["file", "LM, K, LoRA, precision"] + keys + ["commit"], rows) +
                "\n\nSource: the files named in the first column (command `python benchmarks/embedding_probe.py "
                "--cache-dir CACHE --augment KEY [--encode KEY]`); machine not recorded in these files.\n")
    return block


def trials_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        rows = [[label, f"`{x['command']}`", f4(x["test"]["ndcg10"]), f4(x["test"]["hr10"]), f4(x["test_alt"]["ndcg10"]),
                 f4(x.get("valid_ndcg10")), x.get("best_epoch", "-")] for label, x in d["runs"].items()]
        return (f"**Settings tried** ({d.get('what', '')})\n\n" +
                table(["setting", "command", "test NDCG@10", "test HR@10", "unmasked NDCG@10", "valid NDCG@10", "best epoch"], rows) +
                "\n\n" + caption(r, name) + "\n")
    return block


def sft_target_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        rows = [[DATASET_NAMES.get(k, k), f"{x['users']:,}", f"{x['users_with_more_than_max_items']:,}",
                 f"{x['interactions_counted_all']:,}", f"{x['share_counted_but_not_shown_all']:.1%}",
                 f"{x['interactions_counted_prompt']:,}"] for k, x in d["datasets"].items()]
        return (f"**What the SFT target counts** (`sft.target`; the prompt shows a user's last {d.get('max_items')} training items; "
                "statistics of the data, no training)\n\n" +
                table(["dataset", "users", f"users with more than {d.get('max_items')} items", "interactions counted, `all`",
                       "of them not in the prompt", "interactions counted, `prompt` (default)"], rows) + "\n\n" +
                caption(r, name) + "\n")
    return block
