import pytest
import torch

from core.generation import SamplingConfig, _sample, filter_logits, generate
from tests.tiny import tiny_model

GREEDY = SamplingConfig(temperature=0.0)


def test_kv_cache_and_recompute_generate_the_same_tokens():
    model = tiny_model()
    prompts = [torch.randint(1, 97, (n,)) for n in (5, 9, 3)]  # different lengths: left padding
    cached = generate(model, prompts, 12, sampling=GREEDY)
    recomputed = generate(model, prompts, 12, sampling=GREEDY, use_cache=False)
    assert torch.equal(cached, recomputed)
    # batching with padding gives what each prompt gives alone
    for i, prompt in enumerate(prompts):
        assert torch.equal(generate(model, [prompt], 12, sampling=GREEDY)[0], cached[i])


def test_generation_respects_the_allowed_id_range_per_position():
    model = tiny_model()
    prompts = [torch.randint(1, 97, (6,))]
    out = generate(model, prompts, 6, allowed=[(10, 20), (10, 20), None, (50, 52), (50, 52), (50, 52)],
                   generator=torch.Generator().manual_seed(0))
    assert ((out[0, :2] >= 10) & (out[0, :2] < 20)).all() and ((out[0, 3:] >= 50) & (out[0, 3:] < 52)).all()
    only = torch.zeros(97, dtype=torch.bool)
    only[[3, 40]] = True  # a mask: e.g. the text range plus a closing tag
    assert set(generate(model, prompts, 5, allowed=only)[0].tolist()) <= {3, 40}
    with pytest.raises(ValueError, match="cover 1 positions"):
        generate(model, prompts, 2, allowed=[(10, 20)])


@pytest.mark.parametrize("allowed, message", [
    ((50, 40), r"range \[50, 40\) must be non-empty"), ((90, 120), r"within the vocabulary \[0, 97\)"),
    ((-5, 10), "non-empty and within"), (torch.zeros(97, dtype=torch.bool), "allows no id in row 0"),
    (torch.ones(2, 97, dtype=torch.bool).index_fill(0, torch.tensor([1]), False), "allows no id in row 1"),
    (torch.ones(96, dtype=torch.bool), r"expected bool \(\.\.\., 97\)"), (torch.ones(97), "expected bool")])
def test_an_allowed_constraint_that_admits_nothing_is_refused(allowed, message):
    """Every logit -inf would silently give id 0 (pad) at every position."""
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        generate(model, [torch.tensor([1, 2]), torch.tensor([3])], 2, allowed=allowed)
    with pytest.raises(ValueError, match="no prompts"):
        generate(model, [], 2)


def test_the_models_training_mode_is_restored_when_generation_fails():
    model = tiny_model().train()

    def fail(step, logits):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        generate(model, [torch.tensor([1, 2])], 2, choose=fail)
    assert model.training


def test_classifier_free_guidance():
    model = tiny_model()
    cond, uncond = [torch.tensor([1, 5, 6, 7])], [torch.tensor([1, 3])]
    plain = generate(model, cond, 8, sampling=GREEDY)
    # guidance with the prompt itself as the unconditional branch changes nothing
    assert torch.equal(generate(model, cond, 8, sampling=GREEDY, cfg_scale=4.0, uncond_prompts=cond), plain)
    # scale 0 samples from the unconditional branch alone
    assert torch.equal(generate(model, cond, 8, sampling=GREEDY, cfg_scale=0.0, uncond_prompts=uncond),
                       generate(model, uncond, 8, sampling=GREEDY))
    with pytest.raises(ValueError, match="unconditional prompt"):
        generate(model, cond, 2, cfg_scale=2.0)


def test_eos_stops_and_pads():
    model = tiny_model()
    first = generate(model, [torch.tensor([1, 2, 3])], 1, sampling=GREEDY)[0, 0]
    out = generate(model, [torch.tensor([1, 2, 3])], 6, sampling=GREEDY, eos_id=int(first), pad_id=0)
    assert out[0].tolist() == [int(first), 0, 0, 0, 0, 0]


def test_sampling_draws_each_id_at_its_tempered_probability_and_never_a_disallowed_one():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05, 0.2])).expand(40_000, 5)
    allowed = torch.tensor([True, True, True, True, False])
    ids = _sample(logits, SamplingConfig(), allowed, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(ids, minlength=5) / len(ids)
    # binomial standard error at 40,000 draws is at most 0.0025; 0.01 is four of them
    torch.testing.assert_close(frequencies, probs, atol=0.01, rtol=0)
    assert frequencies[4] == 0
    # temperature 0.5 squares the probabilities (renormalised)
    sharp = torch.bincount(_sample(logits, SamplingConfig(temperature=0.5), allowed, torch.Generator().manual_seed(1)),
                           minlength=5) / len(ids)
    torch.testing.assert_close(sharp, probs**2 / (probs**2).sum(), atol=0.01, rtol=0)
    # one allowed id with all the mass, the rest -inf: always that id, also at the edges of the vocabulary
    for only in (0, 4):
        one = torch.full((1000, 5), float("-inf"))
        one[:, only] = 0.0
        assert (_sample(one, SamplingConfig(), None, torch.Generator().manual_seed(2)) == only).all()
    # the same generator state draws the same ids
    assert torch.equal(_sample(logits, SamplingConfig(), allowed, torch.Generator().manual_seed(0)), ids)


def test_top_k_and_top_p_filters_on_a_known_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda cfg: torch.isfinite(filter_logits(logits, cfg, None))[0].tolist()  # noqa: E731
    assert kept(SamplingConfig(top_k=2)) == [True, True, False, False]
    assert kept(SamplingConfig(top_p=0.8)) == [True, True, False, False]
    assert kept(SamplingConfig(top_p=0.81)) == [True, True, True, False]
    assert kept(SamplingConfig(top_p=0.1)) == [True, False, False, False]
    # Sampling tempers first: at T = 0.25 the probabilities are 0.880, 0.114, 0.007, 0.0001, so the 0.9 nucleus is
    # the first two ids (on the untempered ones it would keep three, and id 2 would come up ~14 times in 2000)
    drawn = _sample(logits.expand(2000, 4), SamplingConfig(temperature=0.25, top_p=0.9), None,
                    torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1}


def test_returned_logits_are_the_constrained_ones_each_token_came_from():
    model = tiny_model()
    prompts = [torch.randint(1, 97, (n,)) for n in (4, 7)]
    allowed = [(10, 20)] * 3 + [None]
    tokens, logits = generate(model, prompts, 4, sampling=GREEDY, allowed=allowed, return_logits=True)
    assert torch.equal(tokens, generate(model, prompts, 4, sampling=GREEDY, allowed=allowed))
    assert logits.shape == (2, 4, 97) and torch.equal(logits.argmax(-1), tokens)
    assert torch.isinf(logits[:, :3, :10]).all() and torch.isfinite(logits[:, :3, 10:20]).all()
    assert torch.isfinite(logits[:, 3]).all()


def test_chosen_tokens_replace_sampling_and_see_the_constrained_logits():
    model = tiny_model()
    prompts = [torch.randint(1, 97, (n,)) for n in (4, 7)]
    allowed = [(10, 12), (20, 22), (30, 32)]
    seen = []

    def pick_upper(step, logits):  # always the second allowed id, whatever the model prefers
        seen.append(logits)
        return torch.full((logits.shape[0],), allowed[step][1] - 1)

    tokens, logits = generate(model, prompts, 3, allowed=allowed, choose=pick_upper, return_logits=True)
    assert tokens.tolist() == [[11, 21, 31]] * 2
    assert all(torch.equal(s, logits[:, i]) for i, s in enumerate(seen))  # what return_logits keeps
    assert torch.isinf(seen[1][:, :20]).all() and torch.isfinite(seen[1][:, 20:22]).all()
    # each chosen token is fed back: the next step's logits are those after it, as with recomputation
    forced = [torch.cat([p, torch.tensor([11])]) for p in prompts]
    _, after = generate(model, forced, 1, allowed=allowed[1:], return_logits=True, use_cache=False)
    assert torch.allclose(after[:, 0], seen[1], atol=1e-5)


def test_several_samples_per_prompt_share_one_prefill():
    model = tiny_model()
    prompts = [torch.randint(1, 97, (n,)) for n in (5, 8)]
    # greedy: every copy continues as the prompt alone does, with the cache and without
    greedy = generate(model, prompts, 6, sampling=GREEDY)
    for use_cache in (True, False):
        assert torch.equal(generate(model, prompts, 6, sampling=GREEDY, samples=3, use_cache=use_cache),
                           greedy.repeat_interleave(3, 0))
    # sampled: rows i * 4 ... i * 4 + 3 are prompt i's; they draw from its distribution, so they differ
    repeated = [p for p in prompts for _ in range(4)]
    tokens, logits = generate(model, prompts, 6, samples=4, return_logits=True,
                              generator=torch.Generator().manual_seed(0))
    _, expected = generate(model, repeated, 1, return_logits=True)
    assert tokens.shape == (8, 6) and torch.allclose(logits[:, 0], expected[:, 0], atol=1e-5)
    assert len({tuple(row) for row in tokens[:4].tolist()}) > 1
    # and guidance keeps each copy's conditional and unconditional rows together
    guided = generate(model, prompts, 4, sampling=GREEDY, cfg_scale=2.0, uncond_prompts=prompts[::-1], samples=2)
    assert torch.equal(guided, generate(model, prompts, 4, sampling=GREEDY, cfg_scale=2.0,
                                        uncond_prompts=prompts[::-1]).repeat_interleave(2, 0))
    with pytest.raises(ValueError, match="samples"):
        generate(model, prompts, 2, samples=0)


def test_forced_positions_ride_in_one_forward_pass_and_change_nothing():
    model = tiny_model()
    prompts = [torch.randint(1, 97, (n,)) for n in (5, 8)]
    per_row = torch.zeros(2, 97, dtype=torch.bool)
    per_row[0, 30], per_row[1, 31] = True, True  # e.g. a given action: one id, different per row
    allowed = [(10, 20), 40, per_row, 41, (10, 20), (10, 20), 42, 43]
    allowed = [(a, a + 1) if isinstance(a, int) else a for a in allowed]
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    fast = generate(model, prompts, 8, sampling=GREEDY, allowed=allowed)
    hook.remove()
    assert fast[:, 1].tolist() == [40, 40] and fast[:, 2].tolist() == [30, 31] and fast[:, 6:].tolist() == [[42, 43]] * 2
    # prompt -> token 0; [0, 40, 30|31, 41] -> token 4; [4] -> token 5; then 42, 43 need no forward pass
    assert len(calls) == 3
    assert torch.equal(fast, generate(model, prompts, 8, sampling=GREEDY, allowed=allowed, use_cache=False))
    guided = dict(cfg_scale=2.0, uncond_prompts=prompts[::-1])
    assert torch.equal(generate(model, prompts, 8, sampling=GREEDY, allowed=allowed, **guided),
                       generate(model, prompts, 8, sampling=GREEDY, allowed=allowed, use_cache=False, **guided))

    def sampled(**options) -> torch.Tensor:  # the same random numbers drawn for the same positions either way
        return generate(model, prompts, 8, sampling=SamplingConfig(temperature=1.0), allowed=allowed,
                        generator=torch.Generator().manual_seed(0), **options)

    assert torch.equal(sampled(), sampled(use_cache=False))

