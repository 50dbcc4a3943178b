"""`uwm bench train|generate`: tokens/s, achieved GFLOP/s and MFU against a matmul peak measured
in the same process, dtype and thread count.

Training steps run through the real DeepSpeed engine (forward, backward, optimizer) on random
tokens; the model FLOPs are `Backbone.flops_per_token` (6 x active matmul parameters + attention).
"""

from __future__ import annotations

import statistics
import time

import torch

from .backbone.model import Backbone, ModelConfig, lm_loss
from .config import load_config
from .precision import resolve_dtype
from .provenance import provenance

__all__ = ["matmul_peak_gflops", "run_bench"]

DEFAULT_VOCAB = 8192  # a typical unified vocabulary (text BPE + image codebook + bins)


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 8) -> float:
    """Best-of-`repeats` GFLOP/s of a square matmul: the machine's practical peak for `dtype`."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _time_train(model_config: ModelConfig, run_config, steps: int) -> dict:
    from .training.engine import build_engine

    torch.manual_seed(0)
    model = Backbone(model_config)
    engine = build_engine(model, run_config)
    B, T = run_config.train.micro_batch, run_config.data.seq_len
    ids = torch.randint(model_config.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.bool)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        out = engine(ids)
        loss = lm_loss(out.logits, ids, mask) + model_config.aux_loss_coef * out.aux_loss
        engine.backward(loss)
        engine.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    flops = model.flops_per_token(T) * B * T
    return {"step_s": step_s, "tokens_per_s": B * T / step_s, "gflops": flops / step_s / 1e9,
            "params": model.num_params(), "active_params": model.num_params(active=True)}


def _time_generate(model: Backbone, new_tokens: int, use_cache: bool, repeats: int) -> float:
    from .generation import SamplingConfig, generate

    prompt = [torch.randint(model.config.vocab_size, (16,))]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, prompt, new_tokens, sampling=SamplingConfig(temperature=0.0), use_cache=use_cache)
        times.append(time.perf_counter() - start)
    return new_tokens / min(times)


def run_bench(what: str, config_name: str, overrides=(), steps: int | None = None, new_tokens: int = 512,
              compare_dense: bool = False) -> dict:
    """Benchmark training (`what="train"`) or generation; returns a JSON-ready dict."""
    config = load_config(config_name, overrides)
    if config.model.vocab_size == 0:
        config.model.vocab_size = DEFAULT_VOCAB
    run_dtype = resolve_dtype(config.train.dtype)  # as the trainer does
    dtype = torch.bfloat16 if run_dtype == "bf16" else torch.float32
    result = {"bench": what, "config": config.name, "overrides": list(overrides), "dtype": run_dtype,
              **provenance()}
    peak = matmul_peak_gflops(dtype)
    result["peak_matmul_gflops"] = peak
    if what == "train":
        result["micro_batch"], result["seq_len"] = config.train.micro_batch, config.data.seq_len
        measured = _time_train(config.model, config, steps or 5)
        result.update(measured, mfu=measured["gflops"] / peak)
        if compare_dense and config.model.is_moe:
            dense = _time_train(config.model.dense_equivalent(), config, steps or 5)
            result["dense_equivalent"] = {**dense, "mfu": dense["gflops"] / peak}
            result["moe_over_dense_step_time"] = measured["step_s"] / dense["step_s"]
    else:
        torch.manual_seed(0)
        config.model.max_seq_len = max(config.model.max_seq_len, new_tokens + 16)
        model = Backbone(config.model).to(dtype).eval()
        repeats = steps or 2
        cached = _time_generate(model, new_tokens, True, repeats)
        recompute = _time_generate(model, new_tokens, False, 1)
        result.update(new_tokens=new_tokens, prompt_tokens=16, batch_size=1, tokens_per_s_kv_cache=cached,
                      tokens_per_s_recompute=recompute, kv_cache_speedup=cached / recompute,
                      params=model.num_params(), active_params=model.num_params(active=True))
    return result
