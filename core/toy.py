"""A small built-in multimodal task ("shapes world") for the core tests and `uwm demo`.

A scene is one coloured shape in a 3 x 3 grid. It has a rendered RGB image, a caption ("a red
circle at the top left"), a position vector, and moves under a 2-D action (row and column steps).
Tasks, each a segment order over the same scenes:

    locate   caption -> position bins            (text + bins only: fast, deterministic)
    caption  image -> caption                    (image -> text)
    draw     caption -> image                    (text -> image, the caption is a CFG condition)
    predict  image + action -> next image        (an action-conditioned world model)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .sequence import Example, Segment, build_example
from .tokenizers import BinTokenizer, TextTokenizer, Tokenizers

__all__ = ["Scene", "TASKS", "random_scenes", "render", "caption", "judge", "toy_example", "fit_toy_tokenizers",
           "write_toy_dataset", "target_prompt", "evaluate_toy"]

SHAPES = ("square", "circle", "triangle")
COLORS = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95), "yellow": (0.95, 0.85, 0.1)}
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
TASKS = ("locate", "caption", "draw", "predict")
# 36 px: each grid cell is 12 px, a whole number of 4 px VQ patches, so a one-cell move shifts the
# shape by exactly three codes (sizes that split cells across patches make `predict` much harder).
IMAGE_SIZE = 36
IMAGE_TASKS = ("caption", "draw", "predict")


@dataclass(frozen=True)
class Scene:
    shape: str
    color: str
    row: int
    col: int

    def moved(self, action: np.ndarray) -> "Scene":
        """Apply a (d_row, d_col) action: rounded to whole cells, clamped to the grid."""
        row = int(np.clip(self.row + np.rint(action[0]), 0, 2))
        col = int(np.clip(self.col + np.rint(action[1]), 0, 2))
        return Scene(self.shape, self.color, row, col)

    @property
    def position(self) -> np.ndarray:
        return np.array([self.row, self.col], dtype=np.float32)


def random_scenes(count: int, rng: np.random.Generator) -> list[Scene]:
    return [Scene(SHAPES[rng.integers(3)], list(COLORS)[rng.integers(4)], int(rng.integers(3)), int(rng.integers(3)))
            for _ in range(count)]


def random_actions(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) actions: whole-cell steps in {-1, 0, 1} plus noise that rounding removes."""
    return (rng.integers(-1, 2, size=(count, 2)) + rng.uniform(-0.15, 0.15, size=(count, 2))).astype(np.float32)


def caption(scene: Scene) -> str:
    return f"a {scene.color} {scene.shape} at the {ROWS[scene.row]} {COLS[scene.col]}"


def render(scene: Scene, size: int = IMAGE_SIZE) -> torch.Tensor:
    """The scene as an RGB image (3, size, size) in [0, 1]."""
    cell = size / 3
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cy, cx, r = (scene.row + 0.5) * cell, (scene.col + 0.5) * cell, cell * 0.38
    if scene.shape == "square":
        inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
    elif scene.shape == "circle":
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    else:  # triangle pointing up
        inside = (yy <= cy + r) & (yy >= cy - r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)
    image = np.full((3, size, size), 0.12, dtype=np.float32)
    for channel, value in enumerate(COLORS[scene.color]):
        image[channel][inside] = value
    return torch.from_numpy(image)


def judge(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read a scene back from images (B, 3, H, W): (row, col, colour index), each (B,) long.

    The cell is the one whose pixels stand out most from the background; the colour is the palette
    colour nearest to that cell's brightest pixels. A rendering-aware judge for generated images.
    """
    B, _, H, W = images.shape
    background = torch.full((3,), 0.12)
    distance = (images - background[None, :, None, None]).abs().sum(1)  # (B, H, W)
    rows = torch.arange(H).mul(3).div(H, rounding_mode="floor")
    cols = torch.arange(W).mul(3).div(W, rounding_mode="floor")
    cell_of = rows[:, None] * 3 + cols[None, :]  # (H, W) cell index 0..8
    scores = torch.zeros(B, 9).index_add_(1, cell_of.flatten(), distance.flatten(1))
    cell = scores.argmax(1)
    palette = torch.tensor(list(COLORS.values()))  # (4, 3)
    colours = []
    for b in range(B):
        pixels = images[b].flatten(1).T[(cell_of.flatten() == cell[b]) & (distance[b].flatten() > 0.3)]
        mean = pixels.mean(0) if len(pixels) else background
        colours.append(int((palette - mean).abs().sum(1).argmin()))
    return cell // 3, cell % 3, torch.tensor(colours)


def toy_example(tokenizers: Tokenizers, task: str, scene: Scene, action: np.ndarray | None = None,
                image_codes: dict | None = None, drop_conditions: bool = False) -> Example:
    """One training example of `task`; `image_codes` maps "now"/"next" to (N,) global image ids."""
    vocab = tokenizers.vocab

    def text(s: str, **flags):
        return Segment.tagged(vocab, "text", tokenizers.encode_text(s), ("<text>", "</text>"), **flags)

    def image(key: str, **flags):
        return Segment.tagged(vocab, "image", image_codes[key], ("<img>", "</img>"), **flags)

    head = Segment("special", torch.tensor([vocab.special("<toy>")]))
    if task == "locate":
        position = tokenizers.encode_vector("position", scene.position)
        segments = [text(caption(scene)), Segment.tagged(vocab, "position", position, ("<state>", "</state>"), is_target=True)]
    elif task == "caption":
        segments = [image("now"), text(caption(scene), is_target=True)]
    elif task == "draw":
        segments = [text(caption(scene), is_condition=True), image("now", is_target=True)]
    elif task == "predict":
        act = Segment.tagged(vocab, "action", tokenizers.encode_vector("action", action), ("<act>", "</act>"))
        segments = [image("now"), act, image("next", is_target=True)]
    else:
        raise ValueError(f"unknown toy task {task!r}; tasks are {TASKS}")
    return build_example([head, *segments], vocab, drop_conditions=drop_conditions)


def fit_toy_tokenizers(scenes: list[Scene], actions: np.ndarray, image_size: int, with_images: bool,
                       vq_steps: int = 400, seed: int = 0, progress: bool = True) -> tuple[Tokenizers, dict]:
    """Fit text BPE on the captions, bins on positions and actions, and (optionally) the image VQ."""
    text = TextTokenizer().fit([caption(s) for s in scenes], vocab_size=512, min_frequency=1)
    position = BinTokenizer(num_bins=3).fit(np.array([[-0.5, -0.5], [2.5, 2.5]], dtype=np.float32))  # centres 0, 1, 2
    action = BinTokenizer(num_bins=16).fit(actions)  # ~3 bins per whole-cell step: learnable from few samples
    images, report = {}, {}
    if with_images:
        from .tokenizers.image import ImageTokenizer, ImageTokenizerConfig

        frames = torch.stack([render(s, image_size) for s in scenes[:2048]])
        # About 8 x 8 codes whatever the image size (one down block per halving towards 8), small
        # convolutions and no attention: flat-coloured shapes need little capacity, and CPU time is short.
        blocks = (16,) + (32,) * int(np.log2(image_size // 8))
        config = ImageTokenizerConfig(image_size=image_size, codebook_size=256, latent_channels=8,
                                      block_out_channels=blocks, mid_block_attention=False)
        vq = ImageTokenizer(config)
        report = vq.fit(frames, steps=vq_steps, batch_size=32, lr=3e-3, seed=seed, progress=progress)
        images["image"] = vq
    return Tokenizers(text, images, {"position": position, "action": action}), report


def write_toy_dataset(out_dir, num_scenes: int = 512, tasks: tuple[str, ...] = TASKS, image_size: int = IMAGE_SIZE,
                      vq_steps: int = 400, seed: int = 0, cfg_dropout: float = 0.1, progress: bool = True,
                      tokenizers: Tokenizers | None = None):
    """Generate scenes, fit tokenizers (or reuse `tokenizers`) and write a sequence-shard folder; returns its path."""
    from .data import ShardWriter

    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown toy tasks {sorted(unknown)}; tasks are {TASKS}")
    rng = np.random.default_rng(seed)
    scenes, actions = random_scenes(num_scenes, rng), random_actions(num_scenes, rng)
    with_images = any(t in IMAGE_TASKS for t in tasks)
    vq_report: dict = {}
    if tokenizers is None:
        tokenizers, vq_report = fit_toy_tokenizers(scenes, actions, image_size, with_images, vq_steps, seed, progress)
    elif with_images and "image" not in tokenizers.images:
        raise ValueError("the reused tokenizers have no image tokenizer, but the tasks need images")
    meta = {"task": "toy", "tasks": list(tasks), "num_scenes": num_scenes, "image_size": image_size, "seed": seed,
            "image_tokenizer": vq_report}
    with ShardWriter(out_dir, tokenizers, meta=meta) as writer:
        for index, (scene, action) in enumerate(tqdm(list(zip(scenes, actions)), desc="toy sequences",
                                                     disable=not progress)):
            codes = None
            if with_images:
                frames = torch.stack([render(scene, image_size), render(scene.moved(action), image_size)])
                now, after = tokenizers.encode_image("image", frames)
                codes = {"now": now, "next": after}
            for task in tasks:
                drop = task == "draw" and rng.random() < cfg_dropout
                writer.add(toy_example(tokenizers, task, scene, action, codes, drop_conditions=drop), group=index)
    return writer.directory


def target_prompt(example: Example) -> tuple[torch.Tensor, int]:
    """Cut an example before its target content: (prompt ids including the target's opening tag,
    number of content tokens the target holds before its closing tag)."""
    targets = torch.nonzero(example.loss_mask).flatten()
    if targets.numel() == 0:
        raise ValueError("example has no target tokens")
    first = int(targets[0])
    return example.token_ids[: first + 1], int(targets.numel()) - 3  # minus opening tag, closing tag, <eos>


@torch.no_grad()
def evaluate_toy(model, tokenizers: Tokenizers, tasks: tuple[str, ...], num_scenes: int = 64, image_size: int = IMAGE_SIZE,
                 seed: int = 1234, cfg_scale: float = 3.0, batch_size: int = 32, images: dict | None = None) -> dict:
    """Score a model on fresh scenes: locate / caption accuracy, draw / predict judge accuracy and PSNR
    vs baselines. With `images` (a dict), also store `images[task] = (truth, generated)`, each
    (num_scenes, 3, H, W), for draw and predict."""
    from .generation import SamplingConfig, generate
    from .metrics import psnr
    from .sequence import pad_batch

    rng = np.random.default_rng(seed)
    scenes, actions = random_scenes(num_scenes, rng), random_actions(num_scenes, rng)
    vocab, greedy = tokenizers.vocab, SamplingConfig(temperature=0.0)
    pad = vocab.special("<pad>")
    codes = None
    if any(t in IMAGE_TASKS for t in tasks):
        now = torch.stack([render(s, image_size) for s in scenes])
        after = torch.stack([render(s.moved(a), image_size) for s, a in zip(scenes, actions)])
        codes = [{"now": n, "next": x} for n, x in zip(tokenizers.encode_image("image", now),
                                                        tokenizers.encode_image("image", after))]
    results: dict = {"num_scenes": num_scenes, "seed": seed}

    def run(task: str, allowed, length: int, **kwargs) -> torch.Tensor:
        outputs = []
        for lo in range(0, num_scenes, batch_size):
            idx = range(lo, min(lo + batch_size, num_scenes))
            examples = [toy_example(tokenizers, task, scenes[i], actions[i], codes and codes[i]) for i in idx]
            prompts = [target_prompt(e)[0] for e in examples]
            extra = {}
            if kwargs.get("cfg_scale", 1.0) != 1.0:
                extra["uncond_prompts"] = [target_prompt(toy_example(tokenizers, task, scenes[i], actions[i],
                                                                     codes and codes[i], drop_conditions=True))[0]
                                           for i in idx]
            outputs.append(generate(model, prompts, length, pad_id=pad, sampling=greedy, allowed=allowed,
                                    **kwargs, **extra))
        return torch.cat(outputs)

    def teacher_forced_accuracy(task: str) -> float:
        """Fraction of target tokens the model ranks first given the true prefix (no compounding errors)."""
        examples = [toy_example(tokenizers, task, scenes[i], actions[i], codes and codes[i]) for i in range(num_scenes)]
        batch = pad_batch(examples, pad)
        logits = model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        mask = batch.loss_mask[:, 1:]
        return float((logits.argmax(-1)[mask] == batch.input_ids[:, 1:][mask]).float().mean())

    if "locate" in tasks:
        predicted = tokenizers.decode_vector("position", run("locate", vocab["position"], 2))
        truth = torch.tensor(np.stack([s.position for s in scenes]))
        results["locate_accuracy"] = float((predicted == truth).all(-1).float().mean())
    if "caption" in tasks:
        close = vocab.special("</text>")
        tokens = run("caption", vocab.mask("text", "</text>"), 24, eos_id=close)
        texts = [tokenizers.decode_text(row) for row in tokens]  # tags and padding are not text: skipped
        results["caption_accuracy"] = float(np.mean([t == caption(s) for t, s in zip(texts, scenes)]))
        results["caption_examples"] = [{"predicted": t, "truth": caption(s)} for t, s in list(zip(texts, scenes))[:4]]
    n_codes = codes[0]["now"].numel() if codes else 0
    truth_rows, truth_cols = torch.tensor([s.row for s in scenes]), torch.tensor([s.col for s in scenes])
    truth_colours = torch.tensor([list(COLORS).index(s.color) for s in scenes])
    if "draw" in tasks:
        drawn = tokenizers.decode_image("image", run("draw", vocab["image"], n_codes, cfg_scale=cfg_scale))
        truth = now  # rendered above for the image codes
        row, col, colour = judge(drawn)
        results["draw_cell_accuracy"] = float(((row == truth_rows) & (col == truth_cols)).float().mean())
        results["draw_color_accuracy"] = float((colour == truth_colours).float().mean())
        results["draw_psnr"] = float(psnr(drawn, truth).clamp(max=60).mean())
        results["draw_teacher_forced_token_accuracy"] = teacher_forced_accuracy("draw")
        results["draw_cfg_scale"] = cfg_scale
        if images is not None:
            images["draw"] = (truth, drawn)
    if "predict" in tasks:
        predicted = tokenizers.decode_image("image", run("predict", vocab["image"], n_codes))
        reconstructed = tokenizers.decode_image("image", torch.stack([c["next"] for c in codes]))
        moved = [s.moved(a) for s, a in zip(scenes, actions)]
        target_cells = torch.tensor([[m.row, m.col] for m in moved])
        row, col, _ = judge(predicted)
        results["predict_cell_accuracy"] = float((torch.stack([row, col], 1) == target_cells).all(1).float().mean())
        results["predict_copy_last_cell_accuracy"] = float(
            (torch.tensor([[s.row, s.col] for s in scenes]) == target_cells).all(1).float().mean())
        results["predict_psnr"] = float(psnr(predicted, after).clamp(max=60).mean())
        results["predict_teacher_forced_token_accuracy"] = teacher_forced_accuracy("predict")
        if images is not None:
            images["predict"] = (after, predicted)
        results["predict_copy_last_psnr"] = float(psnr(now, after).clamp(max=60).mean())
        results["predict_vq_ceiling_psnr"] = float(psnr(reconstructed, after).clamp(max=60).mean())
    return results
