"""Config and result field descriptions (`tslrec config`, --help) say what a field does, never what it measured.

Measurements go out of date with the code and the machine; they belong in RESULTS.md (generated from
benchmarks/results/) or docs/, where each names its file, commit and machine.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a measurement looks like in prose: a metric value (0.0577), a speed-up or slow-down (2.9x, 12-24x slower,
# 30% more time), a timing (8.1 s per epoch, 120 ms), or a metric named with its value (NDCG@10 0.05).
MEASUREMENT = re.compile(
    r"\b0\.0\d{2,}"
    r"|\b\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?\s*x\b"
    r"|\b\d+(?:\.\d+)?\s*%\s*(?:more|less|faster|slower)"
    r"|\b\d+(?:\.\d+)?\s*(?:s|ms|min)\s*(?:per|/)\s*(?:epoch|step|batch|eval)"
    r"|\b\d+(?:\.\d+)?\s*(?:s|ms)\b(?!\w)"
    r"|(?:NDCG|HR)@\d+\s+(?:of\s+)?\d",
    re.IGNORECASE)


def descriptions() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted((ROOT / "schemas").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Field":
                for kw in node.keywords:
                    if kw.arg == "description":
                        try:
                            text = ast.literal_eval(kw.value)
                        except ValueError:
                            text = ast.unparse(kw.value)
                        out.append((path.name, node.lineno, text))
    return out


def test_the_pattern_catches_measurements_and_passes_plain_statements():
    for measured in ["~2.9x faster SASRec epochs on Beauty", "12-24x slower than 'fp32'", "(0.0710 vs 0.0711 in fp32)",
                     "less memory, ~30% more time", "8.1 s per epoch", "1024 was ~1.5x slower", "took 0.70 s",
                     "NDCG@10 0.0577"]:
        assert MEASUREMENT.search(measured), measured
    for plain in ["Stop after this many evaluations without a better validation NDCG@10.", "HR@10 averaged over users.",
                  "LoRA rank; None: the task's (group 8, next_item 16).", "weight [N+1, d]", "sha256 of the raw file's bytes.",
                  "Width H of the 'random' source table (384 = MiniLM's hidden size)", "scaling the ID table to std 0.02",
                  "AdamW peak learning rate; None: the task's (group 1e-3, next_item 3e-4)."]:
        assert not MEASUREMENT.search(plain), plain


def test_no_field_description_holds_a_measurement():
    found = descriptions()
    assert len(found) > 50                                            # the scan sees the schemas' fields
    bad = [f"{name}:{line}: {MEASUREMENT.search(text).group(0)!r} in {text[:120]!r}"
           for name, line, text in found if MEASUREMENT.search(text)]
    assert not bad, "move measurements to RESULTS.md or docs/:\n" + "\n".join(bad)
