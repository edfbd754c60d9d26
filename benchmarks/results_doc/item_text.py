"""Blocks for the item-text question: does a table the language model makes from item text beat Base, and does
TSLRec's SFT with titles in the prompt add to the LM's reading of the text alone?

Read from `text-<dataset>.json` (benchmarks/text.py merge: `cells`, `choice_on_valid`, `popularity`),
`text-<dataset>-replication.json` (the chosen cells on fresh seeds, same schema); what the text costs is in
text_cost.py. Every verdict, and whether the issue's target is met, is computed
from the files: nothing here states a result."""
from __future__ import annotations

from typing import Any, Callable

from .load import REL, Results, caption
from .tables import (BACKBONE_NAMES, CELL_BACKBONES, DATASET_NAMES, cells_table, f4, pval, source_name, table,
                     text_control)

TEXT_DATASETS = ["beauty", "ml-1m", "yelp"]
TARGET_BACKBONES = ["sasrec", "fmlprec"]
KINDS = {"text_only": "text alone", "text_enhanced": "TSLRec's SFT with item text"}
ALPHA = 0.05
SEEDS = 3
REPLICATION_SEEDS = [45, 46, 47]
TARGET = ("a cell whose item table comes from the language model (the text alone, or TSLRec's SFT with titles), "
          f"chosen on validation, above Base at p <= {ALPHA} on test NDCG@10 with {SEEDS} seeds, for both SASRec and "
          "FMLP-Rec, on Beauty and on at least one of ML-1M and Yelp, and holding on seeds "
          f"{REPLICATION_SEEDS[0]}-{REPLICATION_SEEDS[-1]}; a text-enhanced cell must also be above the text-only "
          f"control (same LM, same fusion) at p <= {ALPHA}")
AGAINST_TEXT = [("p vs text alone, same LM and fusion", "p_vs_text_only", text_control),
                ("p vs Base + Base ensemble", "p_vs_ensemble_control", lambda s: "none" if s not in (None, "none") else None)]


def text_file(dataset: str) -> str:
    return f"text-{dataset}.json"


def replication_file(dataset: str) -> str:
    return f"text-{dataset}-replication.json"


def _cell(d: dict[str, Any] | None, backbone: str, fusion: str | None, source: str | None) -> dict[str, Any] | None:
    return next((c for c in (d or {}).get("cells", [])
                 if (c.get("backbone"), c.get("fusion"), c.get("source")) == (backbone, fusion, source)), None)


def _ndcg(c: dict[str, Any] | None) -> float | None:
    return c["mean"]["ndcg10"] if c else None


def _backbones(d: dict[str, Any]) -> list[str]:
    names = {c["backbone"] for c in d.get("cells", [])} | set(d.get("choice_on_valid") or {})
    return sorted(names, key=lambda b: (CELL_BACKBONES.index(b) if b in CELL_BACKBONES else len(CELL_BACKBONES), b))


def _above(mine: float | None, ref: float | None, p: float | None, what: str) -> list[str]:
    """What stops 'mine is above ref at p <= ALPHA on test NDCG@10'; [] when nothing does."""
    if ref is None:
        return [f"no {what} cell to compare with"]
    if mine is None or mine <= ref:
        return [f"not above {what} on test ({f4(mine)} against {f4(ref)})"]
    if p is None:
        return [f"no t-test against {what}"]
    return [] if p <= ALPHA else [f"above {what} but p = {pval(p)} > {ALPHA}"]


def _vs_base_and_control(d: dict[str, Any], backbone: str, fusion: str, source: str) -> list[str]:
    """What stops a cell of `d` being above Base (and, if text-enhanced, above its text-only control)."""
    c = _cell(d, backbone, fusion, source)
    problems = _above(_ndcg(c), _ndcg(_cell(d, backbone, "base", None)), ((c or {}).get("p_vs_base") or {}).get("ndcg10"),
                      "Base")
    control = text_control(source)
    if control is not None:
        problems += _above(_ndcg(c), _ndcg(_cell(d, backbone, fusion, control)),
                           ((c or {}).get("p_vs_text_only") or {}).get("ndcg10"), "the text-only control")
    return problems


def assess(d: dict[str, Any], rep: dict[str, Any] | None, backbone: str, kind: str) -> dict[str, Any] | None:
    """The validation-chosen cell of one kind against the target: its name, figures, what stops it on the
    file's seeds (`problems`) and, where nothing does, on the replication seeds (`replication`). None if the file
    chose no cell of that kind for the backbone."""
    ch = ((d.get("choice_on_valid") or {}).get(backbone) or {}).get(kind)
    if not ch:
        return None
    fusion, source = ch["fusion"], ch["source"]
    n = ch.get("n_seeds") or 0
    problems = [] if n >= SEEDS else [f"{n} seed{'' if n == 1 else 's'}, not {SEEDS}"]
    if not ch.get("beats_base_on_valid"):
        problems.append("not above Base on validation (validation chooses Base)")
    problems += _vs_base_and_control(d, backbone, fusion, source)
    replication = None
    if not problems:
        rc = _cell(rep, backbone, fusion, source)
        if rep is None:
            replication = ["not replicated yet (no replication file)"]
        elif rc is None:
            replication = ["replication: the file has no such cell"]
        else:
            replication = [] if set(REPLICATION_SEEDS) <= set(rc.get("seeds", [])) else \
                [f"replication: seeds {', '.join(str(s) for s in rc.get('seeds', []))}, not "
                 f"{REPLICATION_SEEDS[0]}-{REPLICATION_SEEDS[-1]}"]
            replication += [f"replication: {x}" for x in _vs_base_and_control(rep, backbone, fusion, source)]
    c = _cell(d, backbone, fusion, source)
    return {"kind": kind, "fusion": fusion, "name": f"{fusion} on {source_name(source)}", "n_seeds": ch.get("n_seeds"),
            "test": _ndcg(c) if c else ch.get("test_ndcg10"), "base": _ndcg(_cell(d, backbone, "base", None)),
            "p": (ch.get("p_vs_base") or {}).get("ndcg10"), "problems": problems, "replication": replication,
            "passed": not problems and replication == []}


def verdict(d: dict[str, Any], rep: dict[str, Any] | None, backbone: str) -> str:
    """One line: each kind's validation-chosen cell, whether it is above Base as the target asks, and whether that held."""
    parts = []
    for kind in KINDS:
        a = assess(d, rep, backbone, kind)
        if a is None:
            continue
        figures = f"test NDCG@10 {f4(a['test'])} against Base's {f4(a['base'])}, p = {pval(a['p'])}, {a['n_seeds']} seeds"
        held = f"held on seeds {', '.join(str(s) for s in REPLICATION_SEEDS)}"
        if a["problems"]:
            text = f"not shown ({'; '.join(a['problems'])})"
        else:
            text = f"above Base at p <= {ALPHA} with {SEEDS} seeds" + \
                   (" and above the text-only control" if kind == "text_enhanced" else "") + \
                   (f"; {held}" if a["replication"] == [] else f"; {'; '.join(a['replication'])}")
        parts.append(f"{a['name']}, {figures}: {text}")
    return f"- **{BACKBONE_NAMES.get(backbone, backbone)}**: " + (". ".join(parts) if parts else "no cell chosen on validation") + "."


def _missing(r: Results, dataset: str) -> list[str] | None:
    """What the dataset lacks for the target, per backbone; None if its file is not there."""
    if not r.has(text_file(dataset)):
        return None
    d = r(text_file(dataset))
    rep = r(replication_file(dataset)) if r.has(replication_file(dataset)) else None
    out = []
    for b in TARGET_BACKBONES:
        found = [a for a in (assess(d, rep, b, kind) for kind in KINDS) if a is not None]
        if any(a["passed"] for a in found):
            continue
        why = "; ".join(f"{KINDS[a['kind']]} ({a['fusion']}): {'; '.join(a['problems'] or a['replication'])}" for a in found)
        out.append(f"{BACKBONE_NAMES[b]}: {why or ('no cell chosen on validation' if b in _backbones(d) else 'not in the file')}")
    return out


def target_missing(r: Results) -> list[str]:
    """What stands between the files and the target; [] when it is met."""
    def say(dataset: str, missing: list[str] | None) -> str:
        name = DATASET_NAMES.get(dataset, dataset)
        return f"{name}: not run yet (no `{text_file(dataset)}`)" if missing is None else f"{name}, " + "; ".join(missing)

    status = {ds: _missing(r, ds) for ds in TEXT_DATASETS}
    out = [say("beauty", status["beauty"])] if status["beauty"] != [] else []
    others = [ds for ds in TEXT_DATASETS if ds != "beauty"]
    if not any(status[ds] == [] for ds in others):
        out.append("neither ML-1M nor Yelp passes (" + "; ".join(say(ds, status[ds]) for ds in others) + ")")
    return out


def _valid(c: dict[str, Any] | None) -> float | None:
    return ((c or {}).get("valid_mean") or {}).get("ndcg10")


PROFILE_SEEDS = 3   # a profile needs the protocol's seeds on every dataset, for the cell and for its Base


def profile_lines(r: Results) -> list[str]:
    """Per target backbone, Beauty's validation-chosen text-alone configuration (fusion and LM, which the other
    datasets ran unchanged) against Base on each dataset's validation: a text profile is warranted only where it
    is above Base on every dataset, each with the protocol's 3 seeds (fewer: the question stays open)."""
    beauty = r(text_file("beauty")) if r.has(text_file("beauty")) else {}
    lines = []
    for b in TARGET_BACKBONES:
        ch = ((beauty.get("choice_on_valid") or {}).get(b) or {}).get("text_only")
        if not ch:
            continue
        said, wins, short = [], True, []
        for ds in TEXT_DATASETS:
            d = r(text_file(ds)) if r.has(text_file(ds)) else None
            c, bc = _cell(d, b, ch["fusion"], ch["source"]), _cell(d, b, "base", None)
            mine, base = _valid(c), _valid(bc)
            name = DATASET_NAMES.get(ds, ds)
            if mine is None or base is None:
                said.append(f"{name}: not run")
                wins = False
                continue
            said.append(f"{name} {f4(mine)} {'above' if mine > base else 'not above'} Base's {f4(base)} ({c['n_seeds']} seeds)")
            wins = wins and mine > base
            if min(c["n_seeds"], bc["n_seeds"]) < PROFILE_SEEDS:
                short.append(name)
        verdict = ("no text profile" if not wins else
                   f"above Base on every dataset so far, but {' and '.join(short)} has fewer than {PROFILE_SEEDS} seeds: "
                   "no text profile until it has them" if short else
                   "above Base on every dataset, so a text profile is warranted: `--profile text`")
        lines.append(f"- {BACKBONE_NAMES[b]}, {ch['fusion']} on {source_name(ch['source'])}: {'; '.join(said)}: {verdict}")
    return lines


# ---------------------------------------------------------------- blocks

def text_target_block() -> Callable[[Results], str]:
    def block(r: Results) -> str:
        missing = target_missing(r)
        return (f"**The target, fixed before the runs:** {TARGET}. *Chosen on validation*: of each kind, the cell with "
                "the best mean validation NDCG@10 among the cells with the most seeds, itself above Base on validation "
                "(else validation chooses Base).\n\n" +
                ("**Met** by the files below.\n" if not missing else f"**Not met yet:** {'; and '.join(missing)}.\n"))
    return block


def text_profile_block() -> Callable[[Results], str]:
    def block(r: Results) -> str:
        lines = profile_lines(r)
        return ("**A text profile?** Offered (as `--profile text`) only for a text configuration that beats Base on "
                "validation NDCG@10 on every dataset; the configuration is the one Beauty's validation chose, run "
                "unchanged on ML-1M and Yelp. The paper's configuration stays the default either way.\n\n" +
                ("\n".join(lines) if lines else "No text-alone cell chosen on Beauty yet.") + "\n")
    return block


def _bin_label(b: dict[str, Any]) -> str:
    lo, hi = b.get("popularity_min"), b.get("popularity_max")
    span = "empty" if lo is None else f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"popularity {span} ({b['n_users']:,} users, {b['n_items']:,} items)"


def _ensembles(d: dict[str, Any], backbone: str) -> list[dict[str, Any]]:
    """The backbone's ensembles of Base with a text cell (not the Base + Base control)."""
    return [c for c in d.get("cells", []) if c.get("backbone") == backbone and c.get("fusion") == "ensemble"
            and c.get("source") not in (None, "none")]


def _ensemble_label(c: dict[str, Any]) -> str:
    member = next((s.split("=", 1)[1] for s in c.get("extra_sets") or [] if s.startswith("train.ensemble_member=")), "?")
    return f"Base + {member} on {source_name(c['source'])}, mixed"


def popularity_table(d: dict[str, Any]) -> str:
    """Test NDCG@10 by popularity bin of the test item: Base, each validation-chosen cell and each ensemble of
    Base with a text cell, per backbone."""
    bins = d["popularity"]["bins"]
    rows = []
    for b in _backbones(d):
        cells = [("Base", _cell(d, b, "base", None))]
        for kind, label in KINDS.items():
            ch = ((d.get("choice_on_valid") or {}).get(b) or {}).get(kind)
            if ch:
                cells.append((f"{label}: {ch['fusion']} on {source_name(ch['source'])}", _cell(d, b, ch["fusion"], ch["source"])))
        cells += [(_ensemble_label(c), c) for c in _ensembles(d, b)] + [("Base + Base, mixed", _cell(d, b, "ensemble", "none"))]
        for label, c in cells:
            if c and c.get("by_popularity"):
                rows.append([f"{BACKBONE_NAMES.get(b, b)}, {label}"] +
                            ["-" if x is None or x != x else f4(x) for x in c["by_popularity"]])
    return table(["cell"] + [_bin_label(x) for x in bins], rows)


def chosen_list(d: dict[str, Any]) -> str:
    lines = []
    for b in _backbones(d):
        for kind, label in KINDS.items():
            ch = ((d.get("choice_on_valid") or {}).get(b) or {}).get(kind)
            if ch:
                lines.append(f"- {BACKBONE_NAMES.get(b, b)}, {label}: {ch['fusion']} on {source_name(ch['source'])}, "
                             f"{ch['n_seeds']} seeds (valid NDCG@10 {f4(ch['valid_ndcg10'])}, "
                             f"{'above' if ch['beats_base_on_valid'] else 'not above'} Base's {f4(ch['base_valid_ndcg10'])}): "
                             f"test NDCG@10 {f4(ch['test_ndcg10'])}, p vs Base {pval((ch.get('p_vs_base') or {}).get('ndcg10'))}")
    return "\n".join(lines)


def ensemble_lines(d: dict[str, Any]) -> str:
    """Each ensemble of Base with a text cell against Base and against the Base + Base ensemble: does the text
    model add what any second model adds? (w chosen on validation per seed.)"""
    lines = []
    for b in _backbones(d):
        ctrl, base = _cell(d, b, "ensemble", "none"), _cell(d, b, "base", None)
        for c in _ensembles(d, b):
            problems = _above(_ndcg(c), _ndcg(base), (c.get("p_vs_base") or {}).get("ndcg10"), "Base") + \
                       _above(_ndcg(c), _ndcg(ctrl), (c.get("p_vs_ensemble_control") or {}).get("ndcg10"), "Base + Base")
            lines.append(f"- {BACKBONE_NAMES.get(b, b)}, {_ensemble_label(c)} (w = "
                         f"{', '.join(str(w) for w in c.get('ensemble_weights') or [])}), {c['n_seeds']} seeds: test NDCG@10 "
                         f"{f4(_ndcg(c))} against Base's {f4(_ndcg(base))} (p = {pval((c.get('p_vs_base') or {}).get('ndcg10'))}) "
                         f"and Base + Base's {f4(_ndcg(ctrl))} (p = {pval((c.get('p_vs_ensemble_control') or {}).get('ndcg10'))}): "
                         + ("above both at p <= 0.05" if not problems else "; ".join(problems)))
    return "\n".join(lines)


def text_dataset_block(dataset: str) -> Callable[[Results], str]:
    """One dataset's text file: every cell, the choice on validation, popularity bins, and the verdicts."""
    def block(r: Results) -> str:
        name, rep_name = text_file(dataset), replication_file(dataset)
        title = f"Item text on {DATASET_NAMES.get(dataset, dataset)}"
        if not r.has(name):
            return f"**{title}**: not run yet (no `{REL}/{name}`; docs/item-text.md says how to run it).\n"
        d = r(name)
        rep = r(rep_name) if r.has(rep_name) else None
        recorded = d.get("dataset")
        setting = (f"the file's dataset: `{recorded}`; " if recorded not in (None, dataset) else "") + \
                  (f"settings: {', '.join(f'`{s}`' for s in d['sets'])}; " if d.get("sets") else "")
        out = [f"**{title}: every cell** ({setting}test metrics history masked, mean ± std over seeds; valid = mean "
               "validation NDCG@10, the only figure that chooses; p = two-sample t-test on test NDCG@10)\n\n" +
               cells_table(d, against=AGAINST_TEXT)]
        chosen = chosen_list(d)
        if chosen:
            out.append("Chosen on validation (of each kind, among the cells with the most seeds):\n\n" + chosen)
        if d.get("popularity"):
            out.append(f"**{title}: test NDCG@10 by popularity of the test item** ({d['popularity'].get('definition')}; "
                       "mean over the cell's seeds)\n\n" + popularity_table(d))
        out.append(f"**Verdict, {DATASET_NAMES.get(dataset, dataset)}** (computed from the file: the validation-chosen "
                   f"cell above Base at p <= {ALPHA} on test NDCG@10 with {SEEDS} seeds; a text-enhanced cell also above "
                   f"the text-only control; replication: `{rep_name}`)\n\n" +
                   "\n".join(verdict(d, rep, b) for b in _backbones(d)))
        mixed = ensemble_lines(d)
        if mixed:
            out.append(f"**{title}: Base mixed with the text cell** (the `ensemble` rule on the two cells' own trained "
                       "models, w chosen on validation; the control mixes Base with another seed's Base)\n\n" + mixed)
        if rep is not None:
            out.append(f"**{title}: replication** (test, history masked)\n\n" + cells_table(rep, against=AGAINST_TEXT))
            mixed = ensemble_lines(rep)
            if mixed:
                out.append(f"**{title}: replication, Base mixed with the text cell**\n\n" + mixed)
        n_cmd = len(d["commands"]) if isinstance(d.get("commands"), list) else 0
        out.append(caption(r, name, *([rep_name] if rep is not None else [])) +
                   (f" The file lists the {n_cmd} command{'s' if n_cmd > 1 else ''} that made its runs." if n_cmd else ""))
        return "\n\n".join(out) + "\n"
    return block
