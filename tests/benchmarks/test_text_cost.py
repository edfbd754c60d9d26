"""benchmarks.text_cost's epoch estimate: cost strata of the epoch's batches, one timed batch each."""
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.text_cost import cost_strata, estimate

COSTS = st.lists(st.floats(min_value=0.01, max_value=1e4, allow_nan=False), min_size=1, max_size=300)


@given(COSTS, st.integers(min_value=1, max_value=40))
def test_strata_partition_the_batches_in_cost_order(costs, k):
    strata = cost_strata(costs, k)
    assert 1 <= len(strata) <= k and all(strata)
    assert sorted(i for s in strata for i in s) == list(range(len(costs)))
    for lo, hi in zip(strata, strata[1:]):                     # contiguous in cost order
        assert max(costs[i] for i in lo) <= min(costs[i] for i in hi)


@given(COSTS, st.integers(min_value=1, max_value=40))
def test_the_estimate_is_unbiased_over_the_draws(costs, k):
    seconds = [3.0 * c + 0.5 for c in costs]                    # any per-batch seconds
    strata = cost_strata(costs, k)
    # The mean over every possible draw (one batch per stratum, uniformly) is the true total.
    mean = estimate(strata, [sum(seconds[i] for i in s) / len(s) for s in strata])
    assert abs(mean - sum(seconds)) <= 1e-9 * sum(seconds)


def test_the_long_tail_gets_strata_of_its_own():
    costs = [1.0] * 600 + [50.0] * 10                           # ten long batches hold ~45% of the cost
    sizes = [len(s) for s in cost_strata(costs, 12)]
    assert sizes[-1] <= 3 and sum(sizes[-5:]) <= 10 and sizes[0] >= 90
