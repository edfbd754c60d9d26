"""The paper's LLM baselines beside TSLRec: the paper's published rows for P5, POD, LlamaRec, E4SRec and
TSLRec (paper-table2.json, unmasked), our Base and TSLRec rows (experiment-<dataset>.json, masked, and the same
weights unmasked), and for each LLM baseline what `llm-baselines-<dataset>.json` records: its measured figures
where it ran, else its measured cost and what would run it."""
from __future__ import annotations

from typing import Any, Callable

from .experiments import paper_rows, summary_of
from .load import Results, provenance
from .tables import BACKBONE_NAMES, BACKBONES, DATASET_NAMES, f4, pm, table

LLM_METHODS = ["p5", "pod", "llamarec", "e4srec"]
METHOD_NAMES = {"p5": "P5", "pod": "POD", "llamarec": "LlamaRec", "e4srec": "E4SRec"}


def baselines_file(dataset: str) -> str:
    return f"llm-baselines-{dataset}.json"


def _hr_ndcg(mean: dict[str, Any] | None, std: dict[str, Any] | None = None) -> str:
    if not mean:
        return "-"
    std = std or {}
    return f"{pm(mean.get('hr10'), std.get('hr10'))} / {pm(mean.get('ndcg10'), std.get('ndcg10'))}"


def _paper(p: dict[str, Any] | None) -> str:
    if not p:
        return "-"
    return f"{f4(p.get('hr10'))} / {f4(p.get('ndcg10'))}" + ("*" if "ndcg10" in p.get("starred", []) else "")


def _hours(x: float) -> str:
    return f"{x:,.1f} h"


def method_row(method: str, x: dict[str, Any] | None, paper: dict[str, Any] | None, has_file: bool,
               said: dict[str, str]) -> tuple[list[str], str | None]:
    """One LLM baseline's row (method, paper, ours masked, ours unmasked, what the file says) and, if it did not
    run, the note on what was measured and what would run it (`said`: what-would-run-it texts already given, by
    method, so that a shared one is not repeated)."""
    label = METHOD_NAMES.get(method, method)
    if x and x.get("n_seeds") and x.get("mean"):
        extra = [f"{x['train_seconds']:,.0f} s training" if x.get("train_seconds") is not None else "",
                 f"peak RSS {x['peak_rss_mb'] / 1024:.1f} GiB" if x.get("peak_rss_mb") is not None else "",
                 f"trained on a subsample of {x['user_fraction']:.0%} of users (llamarec.user_fraction)"
                 if (x.get("user_fraction") or 1.0) < 1.0 else ""]
        status = f"ran: seeds {', '.join(str(s) for s in x.get('seeds', []))}" + \
                 "".join(f", {e}" for e in extra if e)
        return [label, _paper(paper), f"{_hr_ndcg(x['mean'], x.get('std'))} ({x['n_seeds']})", _hr_ndcg(x.get("test_alt")),
                status], None
    nr = (x or {}).get("not_run")
    if nr:
        status = (f"not run: measured {_hours(nr['hours_per_epoch'])} per epoch x {nr['epochs']} "
                  f"epoch{'s' if nr['epochs'] != 1 else ''} = {_hours(nr['hours_per_seed'])} per seed (`{nr['source']}`)")
        runs_it = nr.get("what_would_run_it") or "not recorded"
        same = next((m for m, t in said.items() if t == runs_it), None)
        said.setdefault(label, runs_it)
        note = (f"- {label}: {nr.get('detail', '')} (`{nr['source']}`, commit {str(nr.get('commit', ''))[:7]}). What would "
                f"run it: " + (f"as for {same}." if same else runs_it.rstrip(".") + "."))
        return [label, _paper(paper), "not run", "not run", status], note
    status = "not run; its cost is not measured on this dataset" if has_file else "not run (no results file yet)"
    return [label, _paper(paper), "not run", "not run", status], None


def baselines_table(r: Results, dataset: str, experiment: str) -> str:
    """One dataset: the LLM baselines, then Base and TSLRec per backbone, the paper's figures beside ours."""
    paper = paper_rows(r)
    name = baselines_file(dataset)
    has = r.has(name)
    methods = r(name).get("methods", {}) if has else {}
    rows, notes, sources, said = [], [], [], {}
    for m in LLM_METHODS:
        row, note = method_row(m, methods.get(m), paper.get((dataset, m, "-")), has, said)
        rows.append(row)
        if note:
            notes.append(note)
        source = (methods.get(m) or {}).get("source") or ((methods.get(m) or {}).get("not_run") or {}).get("source")
        if source and r.has(source) and source not in sources:
            sources.append(source)
    d = r(experiment) if r.has(experiment) else None
    for b in BACKBONES:
        for v, label in (("base", "Base"), ("tslrec", "TSLRec")):
            p, s = paper.get((dataset, b, v)), summary_of(d, b, v) if d else None
            if not p and not s:
                continue
            rows.append([f"{BACKBONE_NAMES.get(b, b)}, {label}", _paper(p),
                         f"{_hr_ndcg(s['mean'], s['std'])} ({s['n_seeds']})" if s else "not run",
                         _hr_ndcg(s.get("alt")) if s else "-", f"measured (`{experiment}`)" if s else "not run"])
    title = DATASET_NAMES.get(dataset, dataset)
    text = (f"**{title}: the paper's LLM baselines and TSLRec beside ours** (HR@10 / NDCG@10 on test; the paper's "
            "figures unmasked, ours history masked as mean ± std (seeds), and the same weights unmasked, mean; "
            "* the paper's star)\n\n" +
            table(["method", "paper (unmasked)", "ours (masked)", "ours (unmasked)", "ours: what ran"], rows))
    if notes:
        text += "\n\nWhat was measured for the baselines that did not run, and what would run them:\n\n" + "\n".join(notes)
    parts = [provenance(r, name)] if has else []
    parts += [provenance(r, experiment, command=False)] if d is not None else []
    parts += [provenance(r, "paper-table2.json")] + [provenance(r, n, command=False) for n in sources]
    text += "\n\nSource: " + "; and ".join(parts) + "."
    if not has:
        text += f" No `{name}` yet: no LLM baseline has been run or costed on {title}."
    return text + "\n"


def llm_baselines_block(experiments: dict[str, str]) -> Callable[[Results], str]:
    """The paper's protocol, then one table per dataset (experiments: dataset -> our experiment file)."""
    def block(r: Results) -> str:
        protocol = r("paper-table2.json").get("protocol", "not recorded")
        return (f"The paper's figures are its published Table 2 (`paper-table2.json`; its protocol: {protocol}); only "
                "the *unmasked* columns compare like with like.\n\n" +
                "\n".join(baselines_table(r, ds, name) for ds, name in experiments.items()))
    return block
