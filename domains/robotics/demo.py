"""The robotics part of `uwm demo`: Meta-World push-v3 at tiny scale (32 x 32 frames, 4 x 4 codes).

Simulate expert / noisy / random episodes -> fit tokenizers (and the frames' learned context decoder) and
write windows -> train the `demo` backbone as an action-conditioned world model -> open-loop PSNR/SSIM vs
copy-last-frame on held-out episodes -> run the expert policy inside `WorldModelEnv` next to the real
simulator (GIF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["run_robotics_demo"]

TASK = "push-v3"


def run_robotics_demo(out: Path, quick: bool, train) -> dict:
    """Run the robotics demo into `out`; `train(name, data, out, overrides)` is the demo's trainer."""
    from core.data import SequenceDataset
    from core.imageio import write_gif
    from simulators.learned import WorldModelEnv
    from simulators.robots import make_env

    from .episodes import EpisodeConfig, generate_episodes, load_episodes
    from .evaluate import open_loop_eval
    from .policies import make_policy
    from .world_model import WorldModel, fit_context_decoder, write_world_model_dataset

    episodes, steps, vq_steps, decoder_steps, train_steps = (8, 16, 80, 40, 80) if quick else (48, 24, 300, 300, 500)
    common = dict(tasks=[TASK], steps=steps, image_size=32, policies={"expert:0": 1, "expert:0.5": 1, "random": 1})
    train_dir = generate_episodes(out / "episodes" / "train", EpisodeConfig(episodes=episodes, seed=0, **common),
                                  workers=2)
    test_dir = generate_episodes(out / "episodes" / "test", EpisodeConfig(episodes=6, seed=1, **common), workers=2)
    data = write_world_model_dataset(train_dir, out / "data", window=5, stride=2, grid=4, vq_steps=vq_steps)
    fit_context_decoder(SequenceDataset(data).tokenizers(), train_dir, out / "context_decoder", decoder_steps,
                        progress=False)
    summary = train("demo-robotics", data, out / "model", [f"train.steps={train_steps}", "model.max_seq_len=256",
                                                            "data.seq_len=224"])
    wm = WorldModel.load(out / "model" / "final", context_decoder=out / "context_decoder")
    test_episodes = load_episodes(test_dir)
    open_loop = open_loop_eval(wm, test_episodes, context=1, horizon=4, per_episode=3, with_fid=False)

    # The same expert in the real simulator and in the world model, from the same first frame: a held-out
    # layout (a test episode's seed), both stepping at the data's action repeat.
    seed, repeat = test_episodes[0].seed, EpisodeConfig().action_repeat
    with make_env(TASK, 32, action_repeat=repeat) as real, \
            WorldModelEnv(wm, TASK, max_steps=12, action_repeat=repeat) as imagined:
        policy = make_policy("expert:0", TASK, real.action_space)
        rows = []
        for env in (real, imagined):
            observation, _ = env.reset(seed=seed)
            policy.reset(seed)
            frames = [observation["image"]]
            for _ in range(12):
                observation, *_ = env.step(policy(observation))
                frames.append(observation["image"])
            rows.append(np.stack(frames))
    gif = out / "robotics_real_vs_world_model.gif"
    write_gif(np.concatenate(rows, axis=2), gif, fps=4, scale=4)  # real | world model, side by side
    return {"train": summary, "open_loop": open_loop, "gif": str(gif)}
