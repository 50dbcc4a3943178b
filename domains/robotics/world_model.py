"""The robotics world model: episode windows as token sequences, and imagined rollouts.

A window of W frames of one episode becomes

    <bos> <robotics> <text> task </text>
    <img> f_0 </img> <state> s_0 </state> <reward> r_0 c_0 </reward>          observation 0
    <act> a_0 </act>
    <img> f_1 </img> <state> s_1 </state> <reward> r_1 c_1 </reward>          observation 1 (target)
    <act> a_1 </act> ...                                                       ... up to W-1, <eos>

f_t: the frame's VQ codes; s_t: binned state; r_t, c_t: reward and success (one bin set) of the step
that led to frame t (0 for the episode's first frame). Each action sits before the frame it causes, and
every observation after the first is a target, so one window teaches prediction at every horizon.
`zero_actions=True` writes all actions as zeros: the "same model without actions" baseline.

`WorldModel.imagine` continues a history with given future actions (batched, one KV cache across
all steps: the action tokens are forced, the observation tokens are generated). `decode_frames` renders
imagined codes; given an anchor (the last real frame the rollout continues from) it keeps the anchor's
real detail where the scene did not change: by code equality (anchored) or with a learned context decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.sequence import Example, Segment, build_example
from core.tokenizers import BinTokenizer, TextTokenizer, Tokenizers

__all__ = ["IMAGE", "DECODINGS", "fit_robot_tokenizers", "fit_context_decoder", "window_example",
           "write_world_model_dataset", "WorldModel", "Imagined",
           "image_config"]

IMAGE = "frame"  # name of the image tokenizer
DECODINGS = ("plain", "anchored", "learned")  # how imagined codes become frames (`WorldModel.decode_frames`)
# 256 state bins: 1-3 mm wide over the five tasks' ranges, finer than the hand's median step (3 mm at
# action repeat 2); 64 bins were 4-12 mm, so most steps left the imagined state in the same bin.
REWARD_BINS, STATE_BINS, ACTION_BINS = 32, 256, 32


def image_config(image_size: int = 64, grid: int = 8, codebook_size: int = 512):
    """The VQ tokenizer architecture for robot frames: `grid` x `grid` codes per frame."""
    from core.tokenizers.image import ImageTokenizerConfig

    levels = int(np.log2(image_size // grid))
    if 2**levels * grid != image_size:
        raise ValueError(f"image_size {image_size} must be grid {grid} times a power of two")
    blocks = (32,) + (64,) * levels
    return ImageTokenizerConfig(image_size=image_size, codebook_size=codebook_size, latent_channels=16,
                                block_out_channels=blocks, mid_block_attention=False)


def fit_robot_tokenizers(episodes, image_size: int = 64, grid: int = 8, codebook_size: int = 512, vq_steps: int = 1500,
                         max_frames: int = 6000, seed: int = 0, progress: bool = True) -> tuple[Tokenizers, dict]:
    """Fit the task-name BPE, state/action/reward/success bins and the frame VQ on `episodes`.

    All episodes must share action and state dimensions (one robot family per dataset).
    Returns (tokenizers, VQ fit report).
    """
    from core.tokenizers.image import ImageTokenizer

    _check_dims(episodes)
    rng = np.random.default_rng(seed)
    from simulators.robots import TASKS, action_bounds

    names = sorted({e.task for e in episodes} | set(TASKS))
    text = TextTokenizer().fit(names * 4, vocab_size=320, min_frequency=1)  # task names, a few tokens each
    low, high = action_bounds(e.task for e in episodes)  # the envs' action box (Pusher's is [-2, 2])
    actions = BinTokenizer(ACTION_BINS).fit(np.stack([low, high]))
    states = BinTokenizer(STATE_BINS).fit(np.concatenate([e.states for e in episodes]))
    # One bin set for (reward, success) pairs: success 0/1 lands in the first/last bin.
    reward_range = np.concatenate([[0.0], *[e.rewards for e in episodes]])
    rewards = BinTokenizer(REWARD_BINS).fit(np.array([[reward_range.min(), 0.0], [reward_range.max(), 1.0]]))
    frames = np.concatenate([e.frames for e in episodes])
    frames = frames[rng.permutation(len(frames))[:max_frames]]
    vq = ImageTokenizer(image_config(image_size, grid, codebook_size))
    report = vq.fit(frames, steps=vq_steps, batch_size=32, lr=2e-3, seed=seed, progress=progress)
    bins = {"action": actions, "state": states, "reward": rewards}
    return Tokenizers(text, {IMAGE: vq}, bins), report


def _check_dims(episodes) -> None:
    if not episodes:
        raise ValueError("no episodes")
    first = episodes[0]
    for e in episodes:
        if e.actions.shape[1] != first.actions.shape[1] or e.states.shape[1] != first.states.shape[1]:
            raise ValueError(f"episodes of {first.task} ({first.actions.shape[1]}-d actions, {first.states.shape[1]}-d "
                             f"states) and {e.task} ({e.actions.shape[1]}-d, {e.states.shape[1]}-d) cannot share "
                             "one dataset: write one dataset per robot")


def _tagged(tokenizers: Tokenizers, name: str, values, tags: tuple[str, str], **flags) -> Segment:
    return Segment.tagged(tokenizers.vocab, name, tokenizers.encode_vector(name, np.asarray(values, np.float32)),
                          tags, **flags)


def header(tokenizers: Tokenizers, task: str) -> list[Segment]:
    """`<robotics> <text> task </text>` (the `<bos>` comes from build_example / the prompt)."""
    vocab = tokenizers.vocab
    return [Segment("special", torch.tensor([vocab.special("<robotics>")])),
            Segment.tagged(vocab, "text", tokenizers.encode_text(task), ("<text>", "</text>"))]


def observation_segments(tokenizers: Tokenizers, codes: torch.Tensor, state, reward: float, success: bool,
                         is_target: bool = False) -> list[Segment]:
    """One observation: frame codes (N,) global ids, state (S,), reward and success of the step into it."""
    vocab = tokenizers.vocab
    return [Segment.tagged(vocab, IMAGE, codes, ("<img>", "</img>"), is_target=is_target),
            _tagged(tokenizers, "state", state, ("<state>", "</state>"), is_target=is_target),
            _tagged(tokenizers, "reward", [reward, float(success)], ("<reward>", "</reward>"), is_target=is_target)]


def action_segment(tokenizers: Tokenizers, action) -> Segment:
    return _tagged(tokenizers, "action", action, ("<act>", "</act>"))


def window_example(tokenizers: Tokenizers, task: str, codes: torch.Tensor, states: np.ndarray, rewards: np.ndarray,
                   success: np.ndarray, actions: np.ndarray) -> Example:
    """One training sequence from W frames: codes (W, N) global ids, states (W, S), rewards (W,),
    success (W,) (of the step into each frame), actions (W-1, A)."""
    W = codes.shape[0]
    if actions.shape[0] != W - 1:
        raise ValueError(f"a window of {W} frames needs {W - 1} actions, got {actions.shape[0]}")
    segments = header(tokenizers, task)
    for t in range(W):
        if t > 0:
            segments.append(action_segment(tokenizers, actions[t - 1]))
        segments += observation_segments(tokenizers, codes[t], states[t], rewards[t], success[t], is_target=t > 0)
    return build_example(segments, tokenizers.vocab)


def step_rewards(episode) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame reward and success (T+1,): those of the step into each frame, 0 for the first."""
    return np.concatenate([[0.0], episode.rewards]).astype(np.float32), np.concatenate([[False], episode.success])


def _folders(episodes_dirs) -> list:
    """One episode folder or a list of them -> a list."""
    return [episodes_dirs] if isinstance(episodes_dirs, (str, Path)) else list(episodes_dirs)


def write_world_model_dataset(episodes_dir, out_dir, window: int = 10, stride: int = 4, tasks: list[str] | None = None,
                              tokenizers: Tokenizers | None = None, zero_actions: bool = False, grid: int = 8,
                              vq_steps: int = 1500, seed: int = 0, progress: bool = True) -> Path:
    """Turn an episode folder (or a list of them) into a sequence-shard folder of `window`-frame windows
    every `stride` steps.

    Fits new tokenizers unless `tokenizers` are given (to fine-tune a model pretrained on other data,
    reuse that data's tokenizers). Returns the shard folder.
    """
    from core.data import ShardWriter
    from domains.robotics.episodes import load_episodes, read_manifest

    if window < 2 or stride < 1:
        raise ValueError(f"window must be >= 2 and stride >= 1, got window={window} stride={stride}")
    folders = _folders(episodes_dir)
    episodes = [episode for folder in folders for episode in load_episodes(folder, tasks)]
    if not episodes:
        raise ValueError(f"{', '.join(map(str, folders))}: no episodes" + (f" of tasks {tasks}" if tasks else ""))
    _check_dims(episodes)
    repeats = {int(read_manifest(folder)["config"]["action_repeat"]) for folder in folders}
    if len(repeats) > 1:
        raise ValueError(f"{', '.join(map(str, folders))}: episodes at different action repeats {sorted(repeats)}; "
                         "one world model learns one repeat's dynamics")
    report: dict = {}
    if tokenizers is None:
        tokenizers, report = fit_robot_tokenizers(episodes, episodes[0].frames.shape[1], grid, vq_steps=vq_steps,
                                                  seed=seed, progress=progress)
    meta = {"task": "robotics", "episodes": [str(folder) for folder in folders],
            "tasks": sorted({e.task for e in episodes}), "window": window, "stride": stride,
            "zero_actions": zero_actions, "action_repeat": repeats.pop(), "image_tokenizer": report}
    with ShardWriter(out_dir, tokenizers, meta=meta) as writer:
        for index, episode in enumerate(tqdm(episodes, desc="world-model sequences", disable=not progress)):
            if len(episode) + 1 < window:
                raise ValueError(f"{episode.task} seed {episode.seed}: {len(episode) + 1} frames < window {window}")
            codes = tokenizers.encode_image(IMAGE, episode.frames)
            rewards, success = step_rewards(episode)
            actions = np.zeros_like(episode.actions) if zero_actions else episode.actions
            for start in range(0, len(episode) + 2 - window, stride):
                end = start + window
                writer.add(window_example(tokenizers, episode.task, codes[start:end], episode.states[start:end],
                                          rewards[start:end], success[start:end], actions[start:end - 1]),
                           group=index)  # overlapping windows share frames
    return writer.directory


def fit_context_decoder(tokenizers: Tokenizers, episodes_dirs, out_dir, steps: int = 800, tasks: list[str] | None = None,
                        seed: int = 0, progress: bool = True) -> dict:
    """Fit the learned context decoder (`core.tokenizers.context_decoder`) of the frame tokenizer on the frames
    of episode folders; save it to `out_dir` (for `WorldModel.load(..., context_decoder=out_dir)`) with its
    report (held-out PSNR per gap of the plain, anchored and learned decodings) as report.json, returned."""
    from core.data import write_json_atomic
    from core.tokenizers.context_decoder import ContextDecoder
    from domains.robotics.episodes import load_episodes

    frames = [episode.frames for folder in _folders(episodes_dirs) for episode in load_episodes(folder, tasks)]
    decoder, report = ContextDecoder.fit(tokenizers.images[IMAGE], frames, steps=steps, seed=seed, progress=progress)
    decoder.save(out_dir)
    write_json_atomic(Path(out_dir) / "report.json", report)
    return report


@dataclass
class Imagined:
    """An imagined rollout of H steps for B rows.

    codes (B, H, N) local VQ codes; frames (B, H, 3, h, w) in [0, 1] (None if not decoded); states (B, H, S);
    rewards (B, H); success (B, H) bool.
    """

    codes: torch.Tensor
    frames: torch.Tensor | None
    states: torch.Tensor
    rewards: torch.Tensor
    success: torch.Tensor


class WorldModel:
    """A fine-tuned backbone + its tokenizers, used as a simulator of robot observations."""

    def __init__(self, model, tokenizers: Tokenizers, max_history: int = 4, zero_actions: bool = False,
                 context_decoder=None, action_repeat: int | None = None, tasks: list[str] | None = None):
        """max_history: observations kept in a prompt (older ones are cut); zero_actions: feed zeros
        instead of the given actions (for a model trained without actions); context_decoder: a
        `ContextDecoder` of the frame tokenizer, for learned anchored decoding (`decode_frames`);
        action_repeat, tasks: the simulator steps per action and the tasks of its training episodes (None: not
        recorded)."""
        self.model, self.tokenizers = model.eval(), tokenizers
        self.action_repeat, self.tasks = action_repeat, tasks
        self.context_decoder = context_decoder
        self.vocab = tokenizers.vocab
        self.max_history = max_history
        self.zero_actions = zero_actions
        self.n_codes = tokenizers.images[IMAGE].config.num_tokens
        self.state_dim = tokenizers.bins["state"].dims
        self.action_dim = tokenizers.bins["action"].dims
        self.image_size = tokenizers.images[IMAGE].config.image_size

    @classmethod
    def load(cls, directory, context_decoder: str | Path | None = None, **kwargs) -> "WorldModel":
        """A world model exported by training (`final/`); context_decoder: a `ContextDecoder` folder fitted on
        this model's frame tokenizer (`uwm data robotics` writes one), for learned anchored decoding."""
        from core.pretrained import load_pretrained, training_data_meta
        from core.tokenizers.context_decoder import ContextDecoder

        model, tokenizers = load_pretrained(directory)
        meta = training_data_meta(directory)
        kwargs.setdefault("action_repeat", meta.get("action_repeat"))
        kwargs.setdefault("tasks", meta.get("tasks"))
        if IMAGE not in tokenizers.images or "action" not in tokenizers.bins:
            raise ValueError(f"{directory}: not a robotics world model (its tokenizers lack frames or actions)")
        if context_decoder is not None:
            context_decoder = ContextDecoder.load(context_decoder, tokenizers.images[IMAGE])
        return cls(model, tokenizers, context_decoder=context_decoder, **kwargs)

    # --- prompts ------------------------------------------------------------------------------
    def prompt(self, task: str, frames: np.ndarray | None, states: np.ndarray, rewards: np.ndarray,
               success: np.ndarray, actions: np.ndarray, codes: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) prompt ids from a history: frames uint8 (K, H, W, 3), states (K, S), rewards/success (K,),
        actions (K-1, A) between them; only the last `max_history` observations are kept.
        `codes` (K, N) local VQ codes of the frames, if known, save encoding them again (frames may then be None)."""
        if frames is None and codes is None:
            raise ValueError("prompt needs the frames or their codes, got neither")
        K = len(codes) if frames is None else frames.shape[0]
        if actions.shape[0] != K - 1:
            raise ValueError(f"a history of {K} frames needs {K - 1} actions, got {actions.shape[0]}")
        self.check_action(actions)
        keep = slice(max(0, K - self.max_history), K)
        codes = self.encode_frames(frames[keep]) if codes is None else torch.as_tensor(codes)[keep]
        codes = self.vocab.to_global(IMAGE, codes)
        actions = actions[max(0, K - self.max_history):]
        segments = header(self.tokenizers, task)
        for i, t in enumerate(range(keep.start, K)):
            if i > 0:
                segments.append(action_segment(self.tokenizers, self._act(actions[i - 1])))
            segments += observation_segments(self.tokenizers, codes[i], states[t], rewards[t], success[t])
        return torch.cat([torch.tensor([self.vocab.special("<bos>")]), *[s.tokens for s in segments]])

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (K, H, W, 3) -> local VQ codes (K, N)."""
        return self.tokenizers.images[IMAGE].encode(frames)

    def check_action(self, actions: np.ndarray) -> None:
        if actions.shape[-1] != self.action_dim and actions.size:
            raise ValueError(f"actions must have {self.action_dim} dimensions, got shape {tuple(actions.shape)}")

    def _act(self, action: np.ndarray) -> np.ndarray:
        return np.zeros_like(action) if self.zero_actions else action

    # --- rollouts -----------------------------------------------------------------------------
    def block_layout(self) -> list[tuple[str, int]]:
        """Tokens of one step after the prompt: (kind, count) with kind a tag name or a modality."""
        return [("<act>", 1), ("action", self.action_dim), ("</act>", 1),
                ("<img>", 1), (IMAGE, self.n_codes), ("</img>", 1),
                ("<state>", 1), ("state", self.state_dim), ("</state>", 1),
                ("<reward>", 1), ("reward", 2), ("</reward>", 1)]

    def prepare_anchor(self, frames: np.ndarray):
        """uint8 real frames (B, h, w, 3) -> a `core.tokenizers.context_decoder.Context` for `decode_frames`:
        their codes and VQ residuals computed once, for rollouts that keep decoding from the same frames."""
        from core.tokenizers.context_decoder import prepare_context

        return prepare_context(self.tokenizers.images[IMAGE], frames)

    @torch.no_grad()
    def decode_frames(self, codes: torch.Tensor, anchor=None, how: str | None = None) -> torch.Tensor:
        """Local VQ codes (B, H, N) -> frames (B, H, 3, h, w) in [0, 1].

        anchor: uint8 real frames (B, h, w, 3) the rollouts continue from (the last observed frame of each
        row; or `prepare_anchor`'s of them), or None for the tokenizer's plain decoding.
        how: one of `DECODINGS` ("plain", "anchored", "learned", `core.tokenizers.context_decoder`); by default
        "learned" when the model has a context decoder and an anchor is given, else "anchored" with an anchor,
        else "plain".
        Anchored: cells whose code equals the anchor's keep the anchor's real detail; learned: the context
        decoder puts it back wherever it judges the scene unchanged."""
        from core.tokenizers.context_decoder import anchored_decode

        how = how or ("plain" if anchor is None else "learned" if self.context_decoder else "anchored")
        if how not in DECODINGS:
            raise ValueError(f"how must be one of {DECODINGS}, got {how!r}")
        if how != "plain" and anchor is None:
            raise ValueError(f"{how} decoding needs the anchor frames the rollouts continue from")
        if how == "learned" and self.context_decoder is None:
            raise ValueError("learned decoding needs a context decoder: WorldModel.load(..., context_decoder=folder)")
        vq = self.tokenizers.images[IMAGE]
        if how == "plain":
            return vq.decode(codes.flatten(0, 1)).unflatten(0, codes.shape[:2])
        if how == "anchored":
            return anchored_decode(vq, codes, anchor)
        return self.context_decoder.decode(codes, anchor)

    def decode_each(self, codes: torch.Tensor, anchor) -> dict[str, torch.Tensor]:
        """Local VQ codes (B, H, N) decoded every way this model can (`DECODINGS`: "learned" only with a context
        decoder) from anchor frames as in `decode_frames`: {how: frames (B, H, 3, h, w)}, sharing the work."""
        from core.tokenizers.context_decoder import decodings

        return decodings(self.tokenizers.images[IMAGE], codes, anchor, self.context_decoder)

    @torch.no_grad()
    def imagine(self, prompts: list[torch.Tensor], actions: np.ndarray, temperature: float = 0.0,
                generator: torch.Generator | None = None, decode: bool = True, anchor=None) -> Imagined:
        """Continue B prompts with actions (B, H, A): generate H observations in one pass.

        decode=False skips decoding the frames (`frames` is None): planners need only rewards.
        anchor: uint8 (B, h, w, 3) real frames (or `prepare_anchor`'s) to decode relative to (`decode_frames`),
        None for plain."""
        from core.generation import SamplingConfig, generate

        actions = np.asarray(actions, np.float32)
        if actions.ndim != 3 or actions.shape[0] != len(prompts):
            raise ValueError(f"actions must be (B={len(prompts)}, H, A), got shape {actions.shape}")
        self.check_action(actions)
        B, H, _ = actions.shape
        V = self.model.config.vocab_size
        action_ids = self.tokenizers.encode_vector("action", self._act(actions))  # (B, H, A) global ids
        masks, content = [], {}
        for h in range(H):
            for kind, count in self.block_layout():
                for i in range(count):
                    mask = torch.zeros(B, V, dtype=torch.bool)
                    if kind.startswith("<"):
                        mask[:, self.vocab.special(kind)] = True
                    elif kind == "action":
                        mask[torch.arange(B), action_ids[:, h, i]] = True
                    else:
                        r = self.vocab[kind]
                        mask[:, r.start:r.stop] = True
                        content.setdefault((h, kind), []).append(len(masks))
                    masks.append(mask)
        # One prompt for all rows (a planner's candidates): run it once and share its KV cache.
        shared = all(p is prompts[0] or torch.equal(p, prompts[0]) for p in prompts)
        tokens = generate(self.model, prompts[:1] if shared else prompts, len(masks), pad_id=self.vocab.special("<pad>"),
                          allowed=masks, sampling=SamplingConfig(temperature=temperature), generator=generator,
                          samples=B if shared else 1)

        def take(kind: str) -> torch.Tensor:  # (B, H, count) global ids
            return torch.stack([tokens[:, content[(h, kind)]] for h in range(H)], 1)

        codes = self.vocab.to_local(IMAGE, take(IMAGE))
        frames = self.decode_frames(codes, anchor) if decode else None
        reward = self.tokenizers.decode_vector("reward", take("reward"))  # (B, H, 2): reward, success
        return Imagined(codes=codes, frames=frames,
                        states=self.tokenizers.decode_vector("state", take("state")),
                        rewards=reward[..., 0], success=reward[..., 1] > 0.5)
