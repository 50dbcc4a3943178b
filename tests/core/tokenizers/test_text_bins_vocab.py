import json

import numpy as np
import pytest
import torch

from core.tokenizers import BinTokenizer, TextTokenizer, Tokenizers, Vocab, check_same_tokenizers

CORPUS = ["the heart is normal in size", "no pleural effusion or pneumothorax", "a red circle at the top left"] * 20


def test_text_round_trip_any_unicode():
    tokenizer = TextTokenizer().fit(CORPUS, vocab_size=300)
    for text in ["the heart is normal in size", "Unseen wörds, émojis 🚗 and 3.14!"]:
        ids = tokenizer.encode(text)
        assert all(0 <= i < tokenizer.vocab_size for i in ids)
        assert tokenizer.decode(ids) == text
    # BPE merges make frequent text shorter than its bytes
    assert len(tokenizer.encode("no pleural effusion")) < len("no pleural effusion".encode())


def test_text_save_load(tmp_path):
    tokenizer = TextTokenizer().fit(CORPUS, vocab_size=300)
    tokenizer.save(tmp_path)
    assert TextTokenizer.load(tmp_path).encode("pleural effusion") == tokenizer.encode("pleural effusion")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        TextTokenizer.load(tmp_path / "missing")


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_bins_round_trip_within_half_a_bin(strategy):
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(0, 1, 5000), rng.uniform(-3, 7, 5000), rng.exponential(2, 5000)], axis=1)
    bins = BinTokenizer(num_bins=64, strategy=strategy).fit(data)
    ids = bins.encode(data)
    assert ids.shape == data.shape and ids.min() >= 0 and ids.max() < 64
    error = (bins.decode(ids).double() - torch.as_tensor(data)).abs()
    half_width = torch.gather(bins.bin_widths(), 1, ids.T).T / 2
    assert bool((error <= half_width + 1e-5).all())


def test_quantile_bins_keep_a_repeated_value_exact(tmp_path):
    """A value that fills whole quantiles (a stationary car's 0 speed) gets a zero-width bin and decodes to itself;
    a file written before bins had a version keeps the old rule (that value in the bin above)."""
    data = np.concatenate([np.zeros(400), np.linspace(0.5, 10.0, 600), [-1.0] * 300])[:, None]
    bins = BinTokenizer(16, "quantile").fit(data)
    assert int((bins.bin_widths() == 0).sum()) >= 4  # 0 and -1 each fill several quantiles
    values = np.array([[-1.0], [0.0], [0.0001], [3.0], [10.0]])
    ids = bins.encode(values)
    decoded = bins.decode(ids).double().numpy()
    np.testing.assert_array_equal(decoded[:2], values[:2])
    half_width = torch.gather(bins.bin_widths(), 1, ids.T).T.numpy() / 2
    assert (np.abs(decoded - values) <= half_width + 1e-5).all()  # decode returns float32
    assert ids[1, 0] < bins.encode(np.array([[0.0001]]))[0, 0]  # 0 and a value just above it no longer share a bin

    bins.save(tmp_path)
    state = json.loads((tmp_path / "bins.json").read_text())
    assert state["version"] == 2
    del state["version"]
    (tmp_path / "bins.json").write_text(json.dumps(state))
    legacy = BinTokenizer.load(tmp_path)
    legacy_ids = legacy.encode(values)
    old_rule = torch.searchsorted(legacy.edges[:, 1:-1].contiguous(), torch.as_tensor(values).T.contiguous(), right=True).T
    assert torch.equal(legacy_ids, old_rule)
    assert legacy.decode(legacy_ids)[1, 0] > 0  # the old rule: 0 lands in the bin above


def test_bins_refuse_non_finite_values():
    bins = BinTokenizer(8).fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"NaN or inf \(at \(1, 1\)\)"):
        bins.encode(np.array([[0.5, 1.5], [1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        bins.encode(np.array([[np.inf, 1.5]]))


def test_bins_expected_value_of_a_distribution_over_bins():
    bins = BinTokenizer(4).fit(np.array([[0.0, 10.0], [4.0, 30.0]]))  # centres 0.5 .. 3.5 and 12.5 .. 27.5
    one_hot = torch.nn.functional.one_hot(torch.tensor([[1, 3]]), 4).float()  # (1, D=2, 4)
    torch.testing.assert_close(bins.expected(one_hot), bins.decode(torch.tensor([[1, 3]])))
    halves = torch.tensor([[[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]])
    torch.testing.assert_close(bins.expected(halves), torch.tensor([[1.0, 25.0]]))  # between two centres
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, 4\)"):
        bins.expected(torch.ones(2, 3))


def test_bins_errors(tmp_path):
    bins = BinTokenizer(16).fit(np.random.default_rng(0).normal(size=(100, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        bins.encode(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="out of range"):
        bins.decode(torch.tensor([[0, 16]]))
    bins.save(tmp_path)
    assert torch.equal(BinTokenizer.load(tmp_path).edges, bins.edges)


def test_vocab_ranges_are_contiguous_and_checked():
    vocab = Vocab.build({"text": 300, "image": 512, "action": 256})
    assert [r.start for r in vocab.ranges] == [0, 64, 364, 876] and vocab.size == 1132
    ids = vocab.to_global("image", torch.tensor([0, 511]))
    assert ids.tolist() == [364, 875]
    assert vocab.to_local("image", ids).tolist() == [0, 511]
    assert vocab.modality_ids(torch.tensor([0, 64, 364, 876])).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="out of range for 'image'"):
        vocab.to_global("image", torch.tensor([512]))
    with pytest.raises(ValueError, match="not in range 'action'"):
        vocab.to_local("action", torch.tensor([5]))
    with pytest.raises(ValueError, match="token id out of range"):
        vocab.modality_ids(torch.tensor([1132]))


def test_bundle_save_load_keeps_the_vocabulary(tmp_path):
    text = TextTokenizer().fit(CORPUS, vocab_size=300)
    bins = BinTokenizer(32).fit(np.random.default_rng(0).normal(size=(50, 2)))
    tokenizers = Tokenizers(text, bins={"action": bins})
    ids = tokenizers.encode_text("pleural effusion")
    assert bool(tokenizers.vocab["text"].contains(ids).all())
    tokenizers.save(tmp_path)
    loaded = Tokenizers.load(tmp_path)
    assert loaded.vocab == tokenizers.vocab
    assert loaded.decode_text(ids) == "pleural effusion"
    action = torch.tensor([[0.1, -0.2]])
    assert torch.equal(loaded.encode_vector("action", action), tokenizers.encode_vector("action", action))
    saved = json.loads((tmp_path / "vocab.json").read_text())
    saved["ranges"][-1][2] += 1  # the action range no longer matches its tokenizer
    (tmp_path / "vocab.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="vocab.json does not match"):
        Tokenizers.load(tmp_path)


def test_tokenizers_refitted_at_the_same_sizes_are_told_apart(tmp_path):
    rng = np.random.default_rng(0)
    text = TextTokenizer().fit(CORPUS, vocab_size=300)
    first = Tokenizers(text, bins={"action": BinTokenizer(32).fit(rng.normal(size=(50, 2)))})
    refit = Tokenizers(text, bins={"action": BinTokenizer(32).fit(rng.normal(size=(50, 2)) * 3)})
    assert first.vocab == refit.vocab  # the layout alone cannot tell them apart...
    assert first.fingerprints()["text"] == refit.fingerprints()["text"]
    assert first.fingerprints()["action"] != refit.fingerprints()["action"]  # ...what the ids mean can
    first.save(tmp_path / "a")
    first.save(tmp_path / "a-again")
    refit.save(tmp_path / "b")
    assert Tokenizers.load(tmp_path / "a").fingerprints() == first.fingerprints()  # stable through save and load
    check_same_tokenizers(tmp_path / "a", tmp_path / "a-again", "hint")
    with pytest.raises(ValueError, match=r"b holds other action tokenizers than .*a: rebuild"):
        check_same_tokenizers(tmp_path / "a", tmp_path / "b", "rebuild")
    edited = json.loads((tmp_path / "b" / "bins-action" / "bins.json").read_text())
    edited["edges"][0][1] += 1e-3  # a tokenizer file edited after the manifest was written
    (tmp_path / "b" / "bins-action" / "bins.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="the action tokenizer files changed"):
        Tokenizers.load(tmp_path / "b")
