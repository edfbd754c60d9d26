"""benchmarks.text merge: files that share cells (a --cells run repeats its Base) pool each run once."""
import json

import pytest

from benchmarks.text import merge

META = {"command": "c", "dataset": "toy", "sets": [], "commit": "x", "machine": {}, "versions": {}, "popularity": {}}


def run(fusion, source, seed, ndcg, key=None):
    m = {"hr5": ndcg, "hr10": ndcg, "ndcg5": ndcg, "ndcg10": ndcg}
    return {"backbone": "sasrec", "fusion": fusion, "source": source, "seed": seed, "key": key or f"{fusion}{source}{seed}",
            "valid": m, "test": m, "best_epoch": 1, "seconds_per_epoch": 1.0, "ensemble_weight": None,
            "by_popularity_ndcg10": [ndcg] * 5, "extra_sets": []}


def write(path, runs):
    path.write_text(json.dumps({**META, "runs": runs}))
    return path


def test_a_base_repeated_in_two_files_counts_once_and_the_enhanced_cell_meets_its_control(tmp_path):
    grid = [run("base", None, s, 0.050 + s * 1e-4) for s in (42, 43, 44)] + \
           [run("add", "text-minilm", s, 0.060 + s * 1e-4) for s in (42, 43, 44)]
    cells = [run("base", None, s, 0.050 + s * 1e-4) for s in (42, 43, 44)] + \
            [run("add", "enhanced-minilm-title", s, 0.055 + s * 1e-4) for s in (42, 43, 44)]
    out = tmp_path / "merged.json"
    merge([write(tmp_path / "a.json", grid), write(tmp_path / "b.json", cells)], out)
    rec = json.loads(out.read_text())
    by = {(c["fusion"], c["source"]): c for c in rec["cells"]}
    assert by[("base", None)]["n_seeds"] == 3 and len(rec["runs"]) == 9
    enh = by[("add", "enhanced-minilm-title")]
    assert enh["p_vs_text_only"]["ndcg10"] < 0.001                     # 0.005 below its control on every seed
    assert rec["choice_on_valid"]["sasrec"]["text_enhanced"]["fusion"] == "add"


def test_two_different_records_of_one_cell_and_seed_stop_the_merge(tmp_path):
    a = write(tmp_path / "a.json", [run("base", None, 42, 0.05, key="k1")])
    b = write(tmp_path / "b.json", [run("base", None, 42, 0.06, key="k2")])
    with pytest.raises(SystemExit, match="two different records"):
        merge([a, b], tmp_path / "m.json")


def test_skip_base_plans_only_the_named_cells_seed_by_seed():
    from argparse import Namespace

    from benchmarks.text import plan_cells
    args = Namespace(cells=["dual:text-minilm"], seeds=[42, 44], skip_base=False)
    with_base = [[c[1:4] for c in phase] for phase in plan_cells({}, "fmlprec", args)]
    assert with_base == [[("base", None, 42), ("dual", "text-minilm", 42)], [("base", None, 44), ("dual", "text-minilm", 44)]]
    args.skip_base = True
    assert [[c[1:4] for c in phase] for phase in plan_cells({}, "fmlprec", args)] == \
        [[("dual", "text-minilm", 42)], [("dual", "text-minilm", 44)]]


def test_a_files_settings_follow_its_cells_and_mixed_settings_in_one_cell_stop_the_merge(tmp_path):
    def write_sets(path, runs, sets):
        path.write_text(json.dumps({**META, "sets": sets, "runs": runs}))
        return path

    base = write_sets(tmp_path / "a.json", [run("base", None, s, 0.05) for s in (42, 43)], ["x=1"])
    enh = write_sets(tmp_path / "b.json", [run("add", "enhanced-minilm-title", s, 0.05) for s in (42, 43)],
                     ["x=1", "sft.item_text_tokens=8"])
    merge([base, enh], tmp_path / "m.json")
    rec = json.loads((tmp_path / "m.json").read_text())
    assert rec["sets"] == ["x=1"]                                      # only what every file ran with
    by = {c["fusion"]: c["sets"] for c in rec["cells"]}
    assert by == {"base": ["x=1"], "add": ["x=1", "sft.item_text_tokens=8"]}
    from benchmarks.results_doc.tables import cells_table
    assert "TSLRec SFT with titles (MiniLM), `sft.item_text_tokens=8` |" in cells_table(rec)
    other = write_sets(tmp_path / "c.json", [run("add", "enhanced-minilm-title", 44, 0.05)], ["x=1"])
    with pytest.raises(SystemExit, match="different --set"):
        merge([base, enh, other], tmp_path / "m2.json")


def test_a_merged_file_merges_again_with_its_commands_and_inputs(tmp_path):
    first = tmp_path / "first.json"
    merge([write(tmp_path / "a.json", [run("base", None, s, 0.05) for s in (42, 43)]),
           write(tmp_path / "b.json", [run("add", "text-minilm", 42, 0.06)])], first)
    late = tmp_path / "late.json"
    late.write_text(json.dumps({**META, "command": "c44", "commit": "y", "runs": [run("add", "text-minilm", 43, 0.06)]}))
    again = tmp_path / "again.json"
    merge([first, late], again)
    rec = json.loads(again.read_text())
    assert rec["commands"] == ["c", "c", "c44"] and rec["commits"] == ["x", "x", "y"]
    assert rec["inputs"] == [str(tmp_path / "a.json"), str(tmp_path / "b.json"), str(late)]
    assert {(c["fusion"], c["n_seeds"]) for c in rec["cells"]} == {("base", 2), ("add", 2)}
