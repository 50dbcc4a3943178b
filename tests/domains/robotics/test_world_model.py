import numpy as np
import pytest
import torch

from core.data import SequenceDataset
from domains.robotics.episodes import load_episodes
from domains.robotics.evaluate import open_loop_eval
from domains.robotics.world_model import IMAGE, WorldModel


def _tags(vocab, tokens):
    names = {vocab.special(t): t for t in ("<act>", "<img>", "</img>", "<state>", "<reward>")}
    return [(i, names[int(t)]) for i, t in enumerate(tokens) if int(t) in names]


def test_each_action_comes_before_the_frame_it_causes(push_sequences):
    dataset = SequenceDataset(push_sequences)
    vocab = dataset.tokenizers().vocab
    example = dataset[0]
    tags = [name for _, name in _tags(vocab, example.token_ids)]
    # observation 0, then (action, observation) pairs: img/state/reward always follow an act
    assert tags[:3] == ["<img>", "<state>", "<reward>"]
    assert tags[3:] == ["<act>", "<img>", "<state>", "<reward>"] * 3
    # every observation after the first is a target, no action or the first observation is
    positions = dict((name, []) for name in ("<act>", "<img>"))
    for i, name in _tags(vocab, example.token_ids):
        if name in positions:
            positions[name].append(i)
    frame = vocab[IMAGE]
    is_frame = frame.contains(example.token_ids)
    first_img, second_img = positions["<img>"][:2]
    assert not example.loss_mask[first_img:second_img][is_frame[first_img:second_img]].any()
    assert example.loss_mask[second_img + 1:second_img + 65].all()
    assert not example.loss_mask[vocab["action"].contains(example.token_ids)].any()


def test_prompts_reproduce_the_training_layout(push_sequences, push_episodes):
    dataset = SequenceDataset(push_sequences)
    tokenizers = dataset.tokenizers()
    episode = load_episodes(push_episodes)[0]
    from tests.tiny import tiny_model

    wm = WorldModel(tiny_model(vocab_size=tokenizers.vocab.size, max_seq_len=512), tokenizers)
    rewards = np.concatenate([[0.0], episode.rewards])
    success = np.concatenate([[False], episode.success])
    prompt = wm.prompt("push-v3", episode.frames[:3], episode.states[:3], rewards[:3], success[:3], episode.actions[:2])
    assert torch.equal(prompt, dataset[0].token_ids[: len(prompt)])
    with pytest.raises(ValueError, match="actions must have 4 dimensions"):
        wm.imagine([prompt], np.zeros((1, 2, 3), np.float32))


def test_a_tiny_world_model_overfits_two_episodes(push_sequences, push_episodes, tmp_path):
    from core.config import load_config
    from core.training import Trainer

    config = load_config("tiny", [f"data.path={push_sequences}", "data.seq_len=512", "model.max_seq_len=512",
                                  "train.steps=150", "train.lr=4e-3", "train.micro_batch=4", "train.save_every=0",
                                  "train.log_every=10"])
    dataset = SequenceDataset(push_sequences)
    summary = Trainer(config, dataset, tmp_path, progress=False).fit()
    import json

    losses = [record["loss"] for record in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
              if "loss" in record]
    assert losses[-1] < 0.5 * losses[0] and summary["final_loss"] < 0.5 * losses[0]
    episodes = load_episodes(push_episodes)
    trained = WorldModel.load(tmp_path / "final")
    from core.pretrained import load_pretrained

    untrained_model, tokenizers = load_pretrained(tmp_path / "final")
    torch.manual_seed(0)
    for p in untrained_model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    untrained = WorldModel(untrained_model, tokenizers)
    after = open_loop_eval(trained, episodes, context=2, horizon=2, per_episode=2, with_fid=False, progress=False)
    before = open_loop_eval(untrained, episodes, context=2, horizon=2, per_episode=2, with_fid=False, progress=False)
    assert np.mean(after["model"]["psnr"]) > np.mean(before["model"]["psnr"]) + 2.0
