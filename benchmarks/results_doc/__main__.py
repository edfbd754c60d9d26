"""Write RESULTS.md from the results files in benchmarks/results/ (see benchmarks/results_doc/__init__.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .document import render
from .load import OUT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md differs from what the results files give")
    ap.add_argument("--out", type=Path, default=OUT, help="where to write (default: RESULTS.md at the repository root)")
    args = ap.parse_args(argv)
    doc = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != doc:
            print(f"{args.out} is out of date: run python -m benchmarks.results_doc", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(doc, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
