"""The `text` stage: read the dataset's item text (`<stem>.items.tsv`) through the data stage's id map.

Only the stages that read text depend on this one (sft and augment with `sft.item_text` other than
'none', `encode`), so a text file changes no other stage's key.
"""
from __future__ import annotations

from schemas.runtime import Runtime
from schemas.text import TextConfig, TextIn, TextOut, TextResult
from stages.core.files import file_sha256, no_cyclic_gc
from stages.core.idmap import decode_tokens
from stages.core.item_text import encode_item_text, read_items_tsv

VERSION = 1
MODULES = ["stages.text", "stages.core.files", "stages.core.idmap", "stages.core.item_text"]


def run(cfg: TextConfig, inp: TextIn, rt: Runtime) -> TextOut:
    item_tokens = decode_tokens(inp.item_ids)
    with no_cyclic_gc():
        columns, texts = read_items_tsv(inp.path, item_tokens)
    n = len(item_tokens)
    has_row = [any(col[i] for col in texts) for i in range(1, n + 1)]
    with_text = sum(has_row)
    mean_chars = {name: round(sum(len(t) for t in col[1:]) / max(with_text, 1), 2) for name, col in zip(columns, texts)}
    result = TextResult(columns=columns, n_items=n, n_with_text=with_text, n_missing=n - with_text,
                        mean_chars=mean_chars, source_sha256=file_sha256(inp.path))
    return TextOut(result=result, artifacts={"item_text": encode_item_text(columns, texts)})
