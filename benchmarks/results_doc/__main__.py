"""Write RESULTS.md, and the README's generated blocks, from the results files in benchmarks/results/
(see benchmarks/results_doc/__init__.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .document import render
from .load import OUT, ROOT, Results
from .readme import fill

README = ROOT / "README.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if RESULTS.md or the README's generated blocks differ from what the results files give")
    ap.add_argument("--out", type=Path, default=OUT, help="where to write (default: RESULTS.md at the repository root)")
    ap.add_argument("--readme", type=Path, default=README, help="the README whose marked blocks are filled in")
    args = ap.parse_args(argv)
    r = Results()
    wanted = {args.out: render(r)}
    if args.readme.is_file():
        wanted[args.readme] = fill(args.readme.read_text(encoding="utf-8"), r)
    stale = [p for p, text in wanted.items() if (p.read_text(encoding="utf-8") if p.is_file() else "") != text]
    if args.check:
        for p in stale:
            print(f"{p} is out of date: run python -m benchmarks.results_doc", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(wanted[p], encoding="utf-8")
        print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
