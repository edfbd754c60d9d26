"""LlamaRec's ranking prompt, assembled as token ids from pieces tokenized once.

The text is LlamaRec's (its alpaca_short template and instruction, its numbered history and lettered
candidate pool), with the separators shortened:

    ### Instruction:
    Given user history in chronological order, recommend an item from the candidate pool with its index letter.

    ### Input:
    User history:
    (1) <title of the oldest shown item>
    ...
    Candidate pool:
    (A) <title of the retriever's first candidate>
    ...

    ### Response:
    <the answer: one letter token, read by the verbalizer (stages/lm/verbalizer.py)>

Pieces (header, each marker "\\n(1)" / "\\n(A)", the pool header, the response, each item's " <text>" cut
to its first `text_tokens` tokens) are tokenized separately and concatenated: no tokenization per
instance, and a title is never cut in the middle of a token. The history shows the most recent
`max_history` items; when a prompt would not fit the model's context, its oldest history items are
dropped first (never a candidate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stages.core.item_text import token_table
from stages.lm.prompt import _split_specials
from stages.lm.verbalizer import LETTERS

INSTRUCTION = ("Given user history in chronological order, recommend an item from the candidate pool with its "
               "index letter.")   # LlamaRec's llm_system_template
HEAD = "### Instruction:\n{instruction}\n\n### Input:\nUser history:"
POOL = "\nCandidate pool:"
TAIL = "\n\n### Response:\n"


@dataclass(frozen=True)
class RankPrompt:
    head: list[int]                    # leading specials + instruction + "User history:"
    pool: list[int]
    tail: list[int]
    history_marks: list[list[int]]     # "\n(1)", "\n(2)", ...
    candidate_marks: list[list[int]]   # "\n(A)", "\n(B)", ...
    text: list[list[int]]              # per item id 0..N: its text tokens (row 0 empty)
    max_history: int
    context: int                       # longest prompt the model takes

    @classmethod
    def build(cls, tokenizer: Any, strings: list[str], n_candidates: int, max_history: int, text_tokens: int,
              context: int) -> "RankPrompt":
        def ids(s: str) -> list[int]:
            return list(tokenizer(s, add_special_tokens=False)["input_ids"])

        lead, head, _ = _split_specials(tokenizer, HEAD.format(instruction=INSTRUCTION))
        table, lengths = token_table(tokenizer, [" " + s if s else "" for s in strings], text_tokens)
        text = [table[i, :n].tolist() for i, n in enumerate(lengths.tolist())]
        return cls(lead + head, ids(POOL), ids(TAIL), [ids(f"\n({j})") for j in range(1, max_history + 1)],
                   [ids(f"\n({LETTERS[j]})") for j in range(n_candidates)], text, max_history, context)

    def _item_len(self, marks: list[list[int]], items: list[int]) -> int:
        return sum(len(marks[j]) + len(self.text[i]) for j, i in enumerate(items))

    def fit(self, history: list[int], candidates: list[int]) -> list[int]:
        """The shown history: its most recent max_history items, fewer if the prompt would not fit."""
        hist = history[-self.max_history:]
        fixed = len(self.head) + len(self.pool) + len(self.tail) + self._item_len(self.candidate_marks, candidates)
        while hist and fixed + self._item_len(self.history_marks, hist) > self.context:
            hist = hist[1:]
        if fixed > self.context:
            raise ValueError(f"a prompt with no history already takes {fixed} tokens, more than the model's "
                             f"{self.context}; lower llamarec.item_text_tokens or llamarec.n_candidates")
        return hist

    def tokens(self, history: list[int], candidates: list[int]) -> list[int]:
        """The prompt of one instance; `candidates` are the real ones (no 0), in slot order A, B, ..."""
        out = list(self.head)
        for j, item in enumerate(self.fit(history, candidates)):
            out += self.history_marks[j] + self.text[item]
        out += self.pool
        for j, item in enumerate(candidates):
            out += self.candidate_marks[j] + self.text[item]
        return out + self.tail

    def length(self, history: list[int], candidates: list[int]) -> int:
        """len(tokens(history, candidates)), without building them."""
        hist = self.fit(history, candidates)
        return (len(self.head) + len(self.pool) + len(self.tail) + self._item_len(self.history_marks, hist)
                + self._item_len(self.candidate_marks, candidates))


def collate(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (B, T) right-padded with 0, attention mask (B, T), index of each prompt's last token (B,))."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.int64)
    mask = torch.zeros(len(prompts), width, dtype=torch.int64)
    for r, p in enumerate(prompts):
        ids[r, :len(p)] = torch.tensor(p, dtype=torch.int64)
        mask[r, :len(p)] = 1
    return ids, mask, mask.sum(1) - 1
