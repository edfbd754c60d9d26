"""Table 1 of the paper, exactly, when the real datasets are present (CI exports TSLREC_DATA_DIR)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.datasets import local_path
from schemas.data import DataConfig, DataIn
from schemas.runtime import Runtime
from stages import data

DATA_DIR = Path(os.environ.get("TSLREC_DATA_DIR", "/nonexistent"))
TABLE1 = {  # users, items, interactions, avg length (1 decimal), density (2 decimals, %)
    "beauty": (22_363, 12_101, 198_502, 8.9, "0.07"),
    "ml-1m": (6_040, 3_416, 999_611, 165.5, "4.84"),
    "yelp": (30_431, 20_033, 316_354, 10.4, "0.05"),
}


@pytest.mark.parametrize("name", list(TABLE1))
def test_table1_exact(name):
    path = local_path(name, DATA_DIR)
    if path is None:
        pytest.skip(f"{name} not under TSLREC_DATA_DIR={DATA_DIR}")
    r = data.run(DataConfig(dataset=name), DataIn(path=path), Runtime(progress=False)).result
    users, items, inter, avg, density = TABLE1[name]
    assert (r.n_users, r.n_items, r.n_interactions) == (users, items, inter)
    assert round(r.avg_length, 1) == avg
    assert f"{100 * r.density:.2f}" == density
