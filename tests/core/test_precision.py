import logging

import pytest
import torch

import core.precision
from core.precision import bf16_is_fast, resolve_dtype


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_runs_where_the_hardware_has_it_and_fp32_elsewhere(monkeypatch, caplog, fast):
    monkeypatch.setattr(core.precision, "bf16_is_fast", lambda device: fast)
    with caplog.at_level(logging.WARNING, logger="core.precision"):
        assert resolve_dtype("bf16", "cpu", "train.dtype") == ("bf16" if fast else "fp32")
        assert resolve_dtype("fp32", "cpu") == "fp32"
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ([] if fast else ["train.dtype=bf16, but this cpu has no native bf16 arithmetic (about 100x "
                                       "slower than fp32 here): running in fp32"])


def test_this_cpu_is_probed_for_native_bf16():
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert bf16_is_fast("cpu") == expected
    assert bf16_is_fast(torch.device("cpu")) == expected


def test_the_trainer_asks_for_bf16_through_it(monkeypatch):
    from core.training import deepspeed_config
    from tests.tiny import tiny_run_config

    asked = []
    monkeypatch.setattr(core.precision, "bf16_is_fast", lambda device: asked.append(str(device)) or False)
    config = tiny_run_config("unused", "train.dtype=bf16")
    assert deepspeed_config(config)["bf16"] == {"enabled": False} and asked == ["cpu"]
    monkeypatch.setattr(core.precision, "bf16_is_fast", lambda device: True)
    assert deepspeed_config(config)["bf16"] == {"enabled": True}
