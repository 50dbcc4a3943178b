import numpy as np
import pytest
import torch

from core.data import SequenceDataset
from domains.robotics.episodes import load_episodes
from domains.robotics.evaluate import open_loop_eval
from domains.robotics.world_model import IMAGE, WorldModel


def _tags(vocab, tokens):
    names = {vocab.special(t): t for t in ("<act>", "<img>", "<state>", "<reward>")}
    return [(i, names[int(t)]) for i, t in enumerate(tokens) if int(t) in names]


def test_each_action_comes_before_the_frame_it_causes(push_sequences, push_episodes):
    dataset = SequenceDataset(push_sequences)
    tokenizers = dataset.tokenizers()
    vocab = tokenizers.vocab
    example = dataset[0]  # the first window of the first episode: frames 0..3, actions 0..2
    episode = load_episodes(push_episodes)[0]
    ids = example.token_ids
    tags = _tags(vocab, ids)
    assert [name for _, name in tags] == ["<img>", "<state>", "<reward>"] + ["<act>", "<img>", "<state>", "<reward>"] * 3
    acts = [i for i, name in tags if name == "<act>"]
    imgs = [i for i, name in tags if name == "<img>"]
    n_codes = tokenizers.images[IMAGE].config.num_tokens
    codes = tokenizers.encode_image(IMAGE, episode.frames[:4])
    for t in range(3):  # action t, then the frame it leads to, t + 1
        assert acts[t] < imgs[t + 1] and (t == 0 or imgs[t] < acts[t])
        assert torch.equal(ids[acts[t] + 1:acts[t] + 5], tokenizers.encode_vector("action", episode.actions[t]))
        assert torch.equal(ids[imgs[t + 1] + 1:imgs[t + 1] + 1 + n_codes], codes[t + 1])
    # observations after the first are targets; actions and the first observation are not
    assert not example.loss_mask[: imgs[1]].any()
    assert example.loss_mask[imgs[1] + 1:imgs[1] + 1 + n_codes].all()
    assert not example.loss_mask[vocab["action"].contains(ids)].any()


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


def test_anchored_decoding_keeps_the_real_detail_of_unchanged_cells(push_sequences, push_episodes):
    from tests.tiny import tiny_model

    tokenizers = SequenceDataset(push_sequences).tokenizers()
    wm = WorldModel(tiny_model(vocab_size=tokenizers.vocab.size, max_seq_len=512), tokenizers)
    real = load_episodes(push_episodes)[0].frames[:1]  # uint8 (1, 32, 32, 3): the anchor
    codes = wm.encode_frames(real)  # (1, 16): a 4 x 4 grid of 8 x 8 pixel cells
    moved = codes.clone()
    moved[0, 0] = (codes[0, 0] + 1) % tokenizers.images[IMAGE].config.codebook_size  # the top-left cell changes
    rollout = torch.stack([codes, moved], 1)  # (1, 2, 16): unchanged, then one cell changed
    plain, anchored = wm.decode_frames(rollout), wm.decode_frames(rollout, anchor=real)
    assert plain.shape == anchored.shape == (1, 2, 3, 32, 32)
    truth = torch.from_numpy(real).permute(0, 3, 1, 2).float() / 255
    assert (plain[0, 0] - truth[0]).abs().max() > 0.05  # the tokenizer blurs ...
    assert torch.allclose(anchored[0, 0], truth[0], atol=1e-5)  # ... anchored, nothing changed: the real frame
    changed = (slice(None), slice(0, 8), slice(0, 8))
    assert torch.equal(anchored[0, 1][changed], plain[0, 1][changed])  # the changed cell: the prediction alone
    residual = truth[0] - plain[0, 0]
    rest = (plain[0, 1] + residual).clamp(0, 1)
    rest[changed] = plain[0, 1][changed]
    assert torch.allclose(anchored[0, 1], rest, atol=1e-5)  # the others: the prediction plus the real detail
    with pytest.raises(ValueError, match=r"context must be uint8 frames \(1, 32, 32, 3\)"):
        wm.decode_frames(rollout, anchor=truth.numpy())
    with pytest.raises(ValueError, match="learned decoding needs a context decoder"):
        wm.decode_frames(rollout, anchor=real, how="learned")
    with pytest.raises(ValueError, match="anchored decoding needs the anchor frames"):
        wm.decode_frames(rollout, how="anchored")


def test_a_tiny_world_model_overfits_two_episodes(push_run, push_episodes):
    import json

    from core.pretrained import load_pretrained

    run, summary = push_run
    losses = [record["loss"] for record in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if "loss" in record]
    assert losses[-1] < 0.5 * losses[0] and summary["final_loss"] < 0.5 * losses[0]
    episodes = load_episodes(push_episodes)
    trained = WorldModel.load(run / "final")
    untrained_model, tokenizers = load_pretrained(run / "final")
    torch.manual_seed(0)
    for p in untrained_model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    untrained = WorldModel(untrained_model, tokenizers)
    from core.metrics import psnr

    # PSNR against the tokenizer's own reconstruction of the real frames: what a perfect model on these
    # tokens would produce (the briefly fitted tokenizer itself is far from the real pixels).
    scores = {}
    for name, wm in (("trained", trained), ("untrained", untrained)):
        keep: dict = {}
        open_loop_eval(wm, episodes, context=2, horizon=2, per_episode=3, with_fid=False, progress=False, keep=keep)
        scores[name] = float(psnr(keep["model"].flatten(0, 1), keep["vq_reconstruction"].flatten(0, 1)).mean())
    assert scores["trained"] > scores["untrained"] + 3.0, scores


def test_the_world_model_planner_collects_episodes_in_the_real_env(push_run, tmp_path):
    from domains.robotics.episodes import EpisodeConfig, generate_episodes
    from domains.robotics.planning import MPCSettings, WorldModelScorer, replan
    from domains.robotics.policies import make_policy
    from simulators.robots import make_env

    run, _ = push_run
    config = EpisodeConfig(tasks=["push-v3"], episodes=1, steps=4, image_size=32, policies={"wm-planner": 1},
                           world_model=str(run / "final"))
    episode = load_episodes(generate_episodes(tmp_path, config, progress=False))[0]
    assert episode.policy == "wm-planner" and episode.actions.shape == (4, 4)
    assert np.abs(episode.actions).max() <= 1.0
    # It is world-model MPC with the experiment's settings: the same seed plans the same first actions.
    wm = WorldModel.load(run / "final", max_history=1)
    with make_env("push-v3", 32, action_repeat=2) as env:
        env.reset(seed=episode.seed)
        settings = MPCSettings()
        planned = replan(env, settings.planner(env.action_space, episode.seed),
                         WorldModelScorer(wm, "push-v3", objective=settings.objective), settings.replan_every)
        np.testing.assert_allclose(planned, episode.actions[:settings.replan_every], atol=1e-6)
        with pytest.raises(ValueError, match="world_model="):
            make_policy("wm-planner", "push-v3", env.action_space, env=env)


def test_several_episode_folders_make_one_dataset(push_sequences, push_episodes, tmp_path):
    from domains.robotics.world_model import write_world_model_dataset

    one = SequenceDataset(push_sequences)
    both = SequenceDataset(write_world_model_dataset([push_episodes, push_episodes], tmp_path, window=4, stride=2,
                                                     tokenizers=one.tokenizers(), progress=False))
    assert len(both) == 2 * len(one)
    assert torch.equal(both[len(one)].token_ids, one[0].token_ids)  # the second folder's windows follow the first's
