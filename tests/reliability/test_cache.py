"""The content-addressed cache: golden key, tensor digests, hits that skip work, corruption."""
from __future__ import annotations

import torch

from pipeline.cache import Cache, _module_ast, cache_key, canonical_json, code_digest, tensor_digest
from pipeline.runner import Runner
from pipeline.synthetic import SyntheticConfig, write_synthetic
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime

GOLDEN_PARTS = {
    "stage": "group",
    "stage_version": 1,
    "code_digest": "0" * 64,
    "config": {"k": 16, "seed": 42, "n_init": 4},
    "input_digests": {"sequences": "a" * 64, "item_embeddings": "b" * 64},
    "env": {"python": "3.11", "torch": "2.13", "transformers": "5.24", "peft": "0.21", "scikit-learn": "1.9"},
}


def test_golden_cache_key():
    # Pinned: if this changes, every user's cache is invalidated. Change it only on purpose.
    assert cache_key(GOLDEN_PARTS) == "d5a5f59d411befc3d2b73897445132390565920ef930fa6d41e9e2776132ffaa"


def test_canonical_json_sorts_keys_and_has_no_spaces():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_tensor_digest_depends_on_names_dtypes_shapes_and_bytes():
    t = torch.arange(6, dtype=torch.float32)
    base = tensor_digest({"w": t})
    assert base == tensor_digest({"w": t.clone()})
    assert base != tensor_digest({"v": t})
    assert base != tensor_digest({"w": t.double()})
    assert base != tensor_digest({"w": t.reshape(2, 3)})
    assert base != tensor_digest({"w": t + 1})
    assert tensor_digest({"a": t, "b": t}) == tensor_digest({"b": t, "a": t})


def test_code_digest_ignores_comments(tmp_path, monkeypatch):
    mod = tmp_path / "digest_probe_mod.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    mod.write_text("x = 1\n")
    a = code_digest(["digest_probe_mod"])
    mod.write_text("# a comment\nx = 1  # another\n")
    _module_ast.cache_clear()                  # digests are read once per process
    assert code_digest(["digest_probe_mod"]) == a
    mod.write_text("x = 2\n")
    assert code_digest(["digest_probe_mod"]) == a   # still this process's code
    _module_ast.cache_clear()
    assert code_digest(["digest_probe_mod"]) != a


def test_put_get_roundtrip_and_no_temp_files(tmp_path):
    cache = Cache(tmp_path)
    ref = cache.put("thing", {"x": torch.ones(3)})
    assert torch.equal(cache.get(ref)["x"], torch.ones(3))
    assert not list(tmp_path.rglob(".tmp-*"))


def _runtime(dirs) -> Runtime:
    cache, data = dirs
    write_synthetic(SyntheticConfig(users=30, items=20), data / "toy" / "toy.txt")
    return Runtime(cache_dir=cache, data_dir=data, progress=False, offline=True)


def _cfg() -> PipelineConfig:
    return PipelineConfig.model_validate({"data": {"dataset": "toy"}})


def test_cache_hit_does_not_rerun_stage(dirs, monkeypatch):
    import stages.data

    rt = _runtime(dirs)
    calls = []
    real = stages.data.run
    monkeypatch.setattr(stages.data, "run", lambda *a: calls.append(1) or real(*a))
    first = Runner(rt).run("data", _cfg())
    second = Runner(rt).run("data", _cfg())
    assert calls == [1]
    assert second.cached and not first.cached
    assert second.key == first.key and second.outputs == first.outputs


def test_corrupt_object_is_recomputed(dirs, monkeypatch):
    import stages.data

    rt = _runtime(dirs)
    first = Runner(rt).run("data", _cfg())
    obj = Cache(rt.cache_dir).object_path(first.outputs["sequences"].digest)
    obj.write_bytes(obj.read_bytes()[:-7] + b"garbage")      # same size class, wrong bytes
    calls = []
    real = stages.data.run
    monkeypatch.setattr(stages.data, "run", lambda *a: calls.append(1) or real(*a))
    again = Runner(rt).run("data", _cfg())
    assert calls == [1] and not again.cached
    assert Cache(rt.cache_dir).get(again.outputs["sequences"])   # healthy again


def test_missing_object_is_recomputed(dirs):
    rt = _runtime(dirs)
    first = Runner(rt).run("data", _cfg())
    Cache(rt.cache_dir).object_path(first.outputs["sequences"].digest).unlink()
    again = Runner(rt).run("data", _cfg())
    assert not again.cached and again.key == first.key


def test_key_changes_with_config_and_input(dirs):
    rt = _runtime(dirs)
    a = Runner(rt).run("data", _cfg())
    b = Runner(rt).run("data", PipelineConfig.model_validate({"data": {"dataset": "toy", "min_length": 4}}))
    assert a.key != b.key
    (rt.data_dir / "toy" / "toy.txt").write_text("1 1 2 3\n2 2 3 1\n")
    c = Runner(rt).run("data", _cfg())
    assert c.key != a.key

