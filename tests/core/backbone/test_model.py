import pytest
import torch

from core.backbone import Backbone, KVCache
from tests.tiny import tiny_config, tiny_model


@pytest.mark.parametrize("overrides", [{}, {"top_k": 2}, {"num_experts": 0}, {"use_residual": True, "moe_every": 2}])
def test_causality_future_tokens_leave_earlier_logits_unchanged(overrides):
    model = tiny_model(**overrides)
    ids = torch.randint(97, (2, 16))
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 97
    with torch.no_grad():
        before, after = model(ids).logits, model(changed).logits
    torch.testing.assert_close(before[:, :10], after[:, :10], atol=1e-5, rtol=0)
    assert (before[:, 10:] - after[:, 10:]).abs().max() > 1e-3


GRID = {"image_grids": [[10, 60, 2, 3]]}  # ids 10..59 are image codes, 2 x 3 per image: random ids make runs


@pytest.mark.parametrize("overrides", [{}, {"top_k": 2}, {"num_experts": 0}, GRID])
def test_kv_cache_decoding_equals_full_recompute(overrides):
    model = tiny_model(**overrides)
    ids = torch.randint(97, (3, 20))
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache(model.config, batch_size=3, max_len=20, dtype=torch.float32)
        steps = [model(ids[:, :7], cache=cache).logits]
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
    assert cache.length == 20
    with torch.no_grad():  # the last position's logits alone, as sampling asks for them
        torch.testing.assert_close(model(ids, last_only=True).logits, full[:, -1:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", [{}, GRID])
def test_a_shared_prefix_cache_decodes_like_copies_of_the_prompt(overrides):
    model = tiny_model(**overrides)
    prompts, continuations = torch.randint(97, (2, 7)), torch.randint(97, (6, 5))  # 3 continuations per prompt
    with torch.no_grad():
        full = model(torch.cat([prompts.repeat_interleave(3, 0), continuations], 1)).logits[:, 7:]
        cache = KVCache(model.config, batch_size=2, max_len=12, dtype=torch.float32)
        model(prompts, cache=cache)
        cache.share_prefix(3)
        steps = [model(continuations[:, :2], cache=cache).logits]  # several tokens in one pass, then one by one
        steps += [model(continuations[:, t : t + 1], cache=cache).logits for t in range(2, 5)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
    assert cache.length == 12 and cache.prefix_length == 7 and cache.keys[0].shape[0] == 6
    with pytest.raises(ValueError, match="already shares"):
        cache.share_prefix(2)


def test_grid_embeddings_give_each_code_its_row_and_column():
    model = tiny_model(**GRID)
    grid = model.grid_embed
    # text, a whole image, the next image's first two codes right after it, text, a new image's first code
    ids = torch.tensor([[1, 10, 11, 12, 13, 14, 15, 16, 17, 2, 3, 18]])
    cells = [None, 0, 1, 2, 3, 4, 5, 0, 1, None, None, 0]
    with torch.no_grad():
        added, run = grid(ids)
        for t, cell in enumerate(cells):
            expected = 0 if cell is None else grid.rows[0].weight[cell // 3] + grid.cols[0].weight[cell % 3]
            torch.testing.assert_close(added[0, t], torch.zeros_like(added[0, t]) + expected)
        assert run.tolist() == [[1]]
        # split inside an image: the run carries over
        first, carried = grid(ids[:, :4])
        rest, _ = grid(ids[:, 4:], carried)
    assert carried.tolist() == [[3]]
    torch.testing.assert_close(torch.cat([first, rest], 1), added)
    # they reach the logits from the first code on
    with torch.no_grad():
        before = model(ids).logits
        for table in [*grid.rows, *grid.cols]:
            table.weight.zero_()
        after = model(ids).logits
    torch.testing.assert_close(after[:, 0], before[:, 0])
    assert (after[:, 1:] - before[:, 1:]).abs().amax(-1).min() > 1e-4
    with pytest.raises(ValueError, match="image_grids must be a list"):
        tiny_config(image_grids=[[10, 60, 2]])
    with pytest.raises(ValueError, match="only training resolves names"):
        tiny_model(image_grids=["cxr"])


@pytest.mark.parametrize("top_k", [1, 2])
def test_aux_loss_and_expert_counts(top_k):
    model = tiny_model(top_k=top_k).train()
    out = model(torch.randint(97, (2, 12)))
    assert out.aux_loss.item() > 0 and out.aux_loss.requires_grad
    assert len(out.expert_counts) == model.config.n_layers
    for counts in out.expert_counts:
        assert counts.shape == (model.config.num_experts,)
        assert int(counts.sum()) == 2 * 12 * top_k  # every token routed to top_k experts


def test_padding_is_routed_to_no_expert():
    """Pads all look alike, so they would all go to one expert and crowd real tokens out of its capacity."""
    model = tiny_model(capacity_factor=1.0).train()
    real = torch.randint(1, 97, (4, 10))
    ids = torch.cat([real, torch.zeros(4, 30, dtype=torch.long)], 1)  # 10 real tokens, 30 pads per row
    mask = torch.zeros(4, 40, dtype=torch.bool)
    mask[:, :10] = True
    padded = model(ids, attention_mask=mask)
    assert [int(c.sum()) for c in padded.expert_counts] == [40] * model.config.n_layers  # the real tokens alone
    unmasked = model(ids)  # without the mask every pad is routed, most of them to one expert
    assert max(int(c.max()) for c in unmasked.expert_counts) > 100
    model.eval()  # and the real tokens' outputs stay those of the unpadded rows
    torch.testing.assert_close(model(ids, attention_mask=mask).logits[:, :10], model(real).logits, atol=1e-5, rtol=0)


def test_dense_equivalent_has_the_same_active_parameters():
    moe = Backbone(tiny_config(top_k=2))
    dense = Backbone(moe.config.dense_equivalent())
    assert dense.config.num_experts == 0 and dense.config.ffn_hidden == 2 * moe.config.ffn_hidden
    gates = sum(p.numel() for n, p in moe.named_parameters() if ".gate." in n)
    assert moe.num_params(active=True) - gates == dense.num_params()
    assert moe.num_params() > dense.num_params()


@pytest.mark.parametrize("overrides", [{}, GRID])
def test_from_pretrained_round_trip(tmp_path, overrides):
    model = tiny_model(seed=3, **overrides)
    model.save_pretrained(tmp_path)
    loaded = Backbone.from_pretrained(tmp_path).eval()
    ids = torch.randint(97, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    assert loaded.config == model.config


def test_bad_input_errors(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"token id out of range: got \[0, 97\], vocab_size is 97"):
        model(torch.tensor([[0, 97]]))
    with pytest.raises(FileNotFoundError, match="config.json"):
        Backbone.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot load weights from .*model.safetensors"):
        Backbone.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_experts"):
        tiny_config(num_experts=1)


def test_lm_loss_weights_target_tokens_by_id():
    from core.backbone import lm_loss

    logits = torch.log(torch.tensor([[[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [1 / 3] * 3]]))  # (1, 3, V=3)
    ids = torch.tensor([[0, 1, 2]])  # targets: id 1 (p 0.5) after position 0, id 2 (p 0.5) after position 1
    mask = torch.tensor([[False, True, True]])
    ce = -torch.log(torch.tensor(0.5))
    torch.testing.assert_close(lm_loss(logits, ids, mask), ce)
    torch.testing.assert_close(lm_loss(logits, ids, mask, torch.ones(3)), ce)
    logits[0, 1] = torch.log(torch.tensor([0.1, 0.1, 0.8]))  # id 2 now has p 0.8; weight it 3x id 1
    expected = (-torch.log(torch.tensor(0.5)) + 3 * -torch.log(torch.tensor(0.8))) / 4
    torch.testing.assert_close(lm_loss(logits, ids, mask, torch.tensor([1.0, 1.0, 3.0])), expected)


def test_lm_loss_bin_smoothing_spreads_the_target_over_neighbouring_bins():
    from core.backbone import lm_loss

    ids = torch.tensor([[0, 5]])  # one target: id 5, in the bin range [3, 9)
    mask = torch.tensor([[False, True]])
    sharp, spread = torch.full((1, 2, 10), -20.0), torch.full((1, 2, 10), -20.0)
    sharp[0, 0, 5] = 20.0  # all mass on the true bin
    spread[0, 0, 3:9] = torch.tensor([-2.0, 0.0, 1.0, 0.0, -2.0, -4.5])  # a bump around it
    plain = lm_loss(sharp, ids, mask)
    assert plain < 1e-6 and lm_loss(spread, ids, mask) > plain  # one-hot targets prefer the sharp guess
    smoothed = [(3, 9, 1.0)]
    assert lm_loss(spread, ids, mask, smoothing=smoothed) < lm_loss(sharp, ids, mask, smoothing=smoothed)
    # outside the smoothed range nothing changes
    assert torch.equal(lm_loss(spread, ids, mask, smoothing=[(6, 9, 1.0)]), lm_loss(spread, ids, mask))
    # the soft target: a Gaussian over the range, e.g. with a tiny sigma it is the one-hot loss again
    torch.testing.assert_close(lm_loss(spread, ids, mask, smoothing=[(3, 9, 1e-3)]), lm_loss(spread, ids, mask))
