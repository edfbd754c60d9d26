"""`precision: auto` (stages/core/precision.py, pipeline/precision.py): bfloat16 only where the device has it
natively, resolved before the key, so a record names the arithmetic that ran and a bf16 machine keeps its keys."""
from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import pytest

from pipeline.overrides import build_config
from pipeline.precision import resolve_precision
from schemas.runtime import Runtime
import stages.core.precision as precision
from tests.conftest import toy

ONE_EPOCH = ("--set", "pretrain.trainer.epochs=1")
WARNING = "no native bfloat16"


@pytest.fixture(params=[True, False], ids=["native-bf16", "emulated-bf16"])
def native(request, monkeypatch) -> bool:
    monkeypatch.setattr(precision, "native_bf16", lambda device: request.param)
    return request.param


def test_auto_resolves_every_precision_and_leaves_explicit_ones_alone(native):
    cfg = build_config(sets=["sft.precision=fp16"])
    out = resolve_precision(cfg, Runtime())
    want = "bf16" if native else "fp32"
    assert out.pretrain.trainer.precision == out.train.trainer.precision == want
    assert out.sft.precision == "fp16"                       # asked for: as asked
    assert cfg.pretrain.trainer.precision == "auto"          # the request itself is unchanged
    assert resolve_precision(out, Runtime()) is out          # nothing left to resolve


def test_auto_is_keyed_and_recorded_as_the_precision_it_resolves_to(cli, dirs, native):
    toy(dirs[1])
    want = "bf16" if native else "fp32"
    auto = json.loads(cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--json").out)
    same = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--set", f"pretrain.trainer.precision={want}", "--json")
    assert json.loads(same.out)["cached"] and json.loads(same.out)["key"] == auto["key"]
    assert auto["pipeline"]["pretrain"]["trainer"]["precision"] == want
    assert auto["result"]["valid"]["precision"] == auto["result"]["test"]["precision"] == want
    other = "fp32" if native else "bf16"
    assert json.loads(cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--set", f"pretrain.trainer.precision={other}",
                          "--json").out)["key"] != auto["key"]


def test_bf16_asked_for_without_native_bf16_warns_once_and_auto_never(cli, dirs, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    toy(dirs[1])
    asked = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--set", "pretrain.trainer.precision=bf16", "--json")
    assert asked.code == 0 and asked.err.count(WARNING) == 1
    assert json.loads(asked.out)["result"]["test"]["precision"] == "bf16"
    auto = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--json")
    assert auto.code == 0 and WARNING not in auto.err


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64", reason="reads x86 /proc/cpuinfo")
def test_the_cpu_probe_agrees_with_the_kernels_cpu_flags():
    precision.native_bf16.cache_clear()
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    assert precision.native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_tile"})
