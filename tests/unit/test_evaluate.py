"""Full-ranking metrics: exact values on hand-made ranks, pessimistic ties, history masking."""
import math

import pytest
import torch

from hypothesis import given, settings
from hypothesis import strategies as st

from stages.core.evaluate import history_ids, metrics, rank_users, ranks_from_scores
from stages.core.sequences import Sequences

NEG = -math.inf


def test_ranks_count_strictly_greater_items():
    # 1 padding column + 5 items; the padding column's score is ignored even when highest.
    scores = torch.tensor([[9.0, 0.5, 0.9, 0.1, 0.7, 0.3],
                           [9.0, 0.5, 0.9, 0.1, 0.7, 0.3],
                           [9.0, 0.5, 0.9, 0.1, 0.7, 0.3]])
    ranks = ranks_from_scores(scores, torch.tensor([2, 1, 3]))
    assert ranks.tolist() == [0, 2, 4]
    assert ranks.dtype == torch.int64


def test_ties_are_pessimistic():
    scores = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0],     # target tied with 2 others: rank 2
                           [0.0, 2.0, 1.0, 1.0, 1.0],     # 1 better + 2 tied: rank 3
                           [0.0, 0.0, 0.0, 0.0, 0.0]])    # all equal (collapsed model): worst rank
    ranks = ranks_from_scores(scores, torch.tensor([1, 3, 2]))
    assert ranks.tolist() == [2, 3, 3]


def test_nan_target_gets_worst_rank():
    scores = torch.tensor([[0.0, float("nan"), 1.0, 2.0]])
    assert ranks_from_scores(scores, torch.tensor([1])).tolist() == [2]


def test_metrics_exact_values():
    ranks = torch.tensor([0, 1, 4, 5, 9, 10, 100, 3])
    m = metrics(ranks, mask_history=False)
    log2 = math.log2
    assert m.hr5 == pytest.approx(4 / 8)
    assert m.hr10 == pytest.approx(6 / 8)
    assert m.ndcg5 == pytest.approx((1 + 1 / log2(3) + 1 / log2(6) + 1 / log2(5)) / 8)
    assert m.ndcg10 == pytest.approx((1 + 1 / log2(3) + 1 / log2(6) + 1 / log2(5) + 1 / log2(7) + 1 / log2(11)) / 8)
    assert m.n_users == 8 and m.mask_history is False


def test_masking_removes_history_but_never_the_target():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    hist = torch.tensor([[0, 3, 1, 2, 1]])                  # items 1, 2, 3 (1 twice), left padding
    # Target 4 (score 2): items 1, 2, 3 are history -> masked, so rank 0 instead of 3.
    assert ranks_from_scores(scores, torch.tensor([4]), hist).tolist() == [0]
    # Target 2 is itself in the history: it stays ranked; item 1 (history) is masked.
    assert ranks_from_scores(scores, torch.tensor([2]), hist).tolist() == [0]
    assert ranks_from_scores(scores, torch.tensor([2])).tolist() == [1]


def test_history_ids_from_csr():
    seqs = Sequences(items=torch.tensor([1, 2, 3, 4, 4, 5], dtype=torch.int32),
                     offsets=torch.tensor([0, 3, 3, 6]), n_items=5)
    assert history_ids(seqs, torch.tensor([0, 1, 2])).tolist() == [[1, 2, 3], [0, 0, 0], [4, 4, 5]]


def reference_ranks(scores: torch.Tensor, targets: torch.Tensor, history: list[set[int]] | None) -> list[int]:
    """Straight from the definition: count the other items (not masked) scoring >= the target."""
    out = []
    for b, target in enumerate(targets.tolist()):
        t = scores[b, target]
        if math.isnan(t):
            out.append(scores.shape[1] - 2)
            continue
        masked = (history[b] - {target}) if history else set()
        out.append(sum(1 for i in range(1, scores.shape[1]) if i != target and i not in masked and scores[b, i] >= t))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_ranks_match_the_definition_with_ties_and_repeated_history(data):
    n, b = data.draw(st.integers(2, 9)), data.draw(st.integers(1, 5))
    scores = torch.tensor([[0.0] + data.draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), min_size=n, max_size=n))
                           for _ in range(b)])                    # few distinct values: many ties
    targets = torch.tensor(data.draw(st.lists(st.integers(1, n), min_size=b, max_size=b)))
    rows = [data.draw(st.lists(st.integers(1, n), max_size=6)) for _ in range(b)]   # repeats allowed
    width = max(1, max(len(r) for r in rows))
    hist = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    assert ranks_from_scores(scores, targets).tolist() == reference_ranks(scores, targets, None)
    assert ranks_from_scores(scores, targets, hist).tolist() == reference_ranks(scores, targets, [set(r) for r in rows])


class Fixed(torch.nn.Module):
    """Scores depend on the last input item only: item (last + 1) scores highest."""

    def __init__(self, n_items: int):
        super().__init__()
        self.max_len = 4
        e = torch.zeros(n_items + 1, n_items + 1)
        e[1:, 1:] = torch.eye(n_items)
        self.table = e

        class E:
            def all(_):
                return self.table
        self.embedding = E()

    def forward(self, seq, table):
        nxt = (seq % (self.table.shape[0] - 1)) + 1      # (B, L) predicted next item id
        return table[nxt] * 10                            # (B, L, N+1) one-hot rows

    def scores(self, h, table):
        s = h @ table.T
        s[..., 0] = NEG
        return s


def test_rank_users_batches_and_masking():
    # 3 users, items 1..6; the model predicts last+1.
    seqs = Sequences(items=torch.tensor([1, 2, 3, 5, 6, 2, 3], dtype=torch.int32),
                     offsets=torch.tensor([0, 3, 5, 7]), n_items=6)
    model = Fixed(6)
    targets = torch.tensor([4, 1, 5])   # user 0 hit; user 1: 6 % 6 + 1 = 1 hit; user 2 predicts 4
    r = rank_users(model, seqs, targets, max_len=4, batch_size=2)
    # user 2: target 5 ties with the 4 other zero-score items (1, 2, 3, 6): rank 1 + 4.
    assert r.tolist() == [0, 0, 5]
    r = rank_users(model, seqs, targets, max_len=4, batch_size=2, mask_history=True)
    assert r.tolist() == [0, 0, 3]      # items 2, 3 (history of user 2) masked
