"""The README's generated blocks: the text between `<!-- results_doc: NAME -->` and `<!-- /results_doc -->` is
the block NAME renders, so the README's findings table comes from the results files like RESULTS.md does."""
from __future__ import annotations

import re
from typing import Callable

from .beside_table2 import beside_table2_block
from .load import Results

BLOCKS: dict[str, Callable[[Results], str]] = {"item-text-beside-table2": beside_table2_block()}
MARKED = re.compile(r"(<!-- results_doc: ([\w-]+) -->\n)(.*?)(<!-- /results_doc -->)", re.DOTALL)


def fill(readme: str, r: Results) -> str:
    """The README with every marked block re-rendered; an unknown block name is an error."""
    def one(m: re.Match) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise ValueError(f"README names an unknown results_doc block {name!r}; known: {', '.join(BLOCKS)}")
        return m.group(1) + BLOCKS[name](r).strip() + "\n" + m.group(4)
    return MARKED.sub(one, readme)
