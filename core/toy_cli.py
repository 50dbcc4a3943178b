"""`uwm data|eval|generate toy`: the built-in shapes-world task on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import toy
from .data import report_json
from .imageio import read_png, write_png
from .pretrained import load_pretrained

__all__ = ["add_arguments", "run"]


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "data":
        parser.add_argument("--out", required=True, help="sequence-shard folder to write")
        parser.add_argument("--scenes", type=int, default=512)
        parser.add_argument("--tasks", default=",".join(toy.TASKS), help=f"comma-separated subset of {toy.TASKS}")
        parser.add_argument("--image-size", type=int, default=toy.IMAGE_SIZE)
        parser.add_argument("--vq-steps", type=int, default=400, help="image tokenizer training steps")
        parser.add_argument("--tokenizers", help="reuse the tokenizers of this folder instead of fitting new ones")
        parser.add_argument("--seed", type=int, default=0)
    else:
        parser.add_argument("--model", required=True, help="a pretrained/exported model folder (final/)")
    if command == "eval":
        parser.add_argument("--tasks", default=",".join(toy.TASKS))
        parser.add_argument("--scenes", type=int, default=64)
        parser.add_argument("--seed", type=int, default=1234)
        parser.add_argument("--cfg-scale", type=float, default=3.0)
        parser.add_argument("--out", help="write the metrics JSON here")
    if command == "generate":
        parser.add_argument("--caption", help="draw: render this caption, e.g. 'a red circle at the top left'")
        parser.add_argument("--image", help="caption / predict: an input PNG")
        parser.add_argument("--action", help="predict: 'd_row,d_col', e.g. '1,0'")
        parser.add_argument("--cfg-scale", type=float, default=3.0, help="classifier-free guidance of draw (--caption)")
        parser.add_argument("--temperature", type=float, default=0.0)
        parser.add_argument("-o", "--output", help="PNG to write (draw / predict)")
        parser.add_argument("--seed", type=int, default=0)


def run(command: str, args: argparse.Namespace) -> None:
    if command == "data":
        tasks = tuple(t for t in args.tasks.split(",") if t)
        tokenizers = None
        if args.tokenizers:
            from .data import SequenceDataset

            tokenizers = SequenceDataset(args.tokenizers).tokenizers()
        path = toy.write_toy_dataset(args.out, args.scenes, tasks, args.image_size, args.vq_steps, args.seed,
                                     tokenizers=tokenizers)
        print(json.dumps({"dataset": str(path), **json.loads((Path(path) / "manifest.json").read_text())["meta"]}, indent=1))
    elif command == "eval":
        model, tokenizers = load_pretrained(args.model)
        tasks = tuple(t for t in args.tasks.split(",") if t)
        image_size = tokenizers.images["image"].config.image_size if "image" in tokenizers.images else toy.IMAGE_SIZE
        report_json(toy.evaluate_toy(model, tokenizers, tasks, args.scenes, image_size, args.seed, args.cfg_scale),
                    args.out)
    elif command == "generate":
        _generate(args)


def _generate(args: argparse.Namespace) -> None:
    from .generation import SamplingConfig, generate

    if not (args.caption or args.image):
        raise ValueError("give --caption (draw), --image (caption) or --image with --action (predict)")
    if (args.caption or args.action) and not args.output:
        raise ValueError("pass -o/--output PNG for the generated image")
    model, tokenizers = load_pretrained(args.model)
    vocab = tokenizers.vocab
    if "image" not in tokenizers.images:
        raise ValueError(f"{args.model} was trained without images: nothing to draw or caption")
    size = tokenizers.images["image"].config.image_size
    n_codes = tokenizers.images["image"].config.num_tokens
    sampling = SamplingConfig(temperature=args.temperature)
    generator = torch.Generator().manual_seed(args.seed)
    tag = lambda name: torch.tensor([vocab.special(name)])  # noqa: E731
    head = torch.cat([tag("<bos>"), tag("<toy>")])

    def image_tokens(path):
        return torch.cat([tag("<img>"), tokenizers.encode_image("image", read_png(path, size)[None])[0], tag("</img>")])

    if args.caption:
        text = torch.cat([tag("<text>"), tokenizers.encode_text(args.caption), tag("</text>")])
        prompt = torch.cat([head, text, tag("<img>")])
        uncond = torch.cat([head, tag("<null>"), tag("<img>")])
        codes = generate(model, [prompt], n_codes, pad_id=vocab.special("<pad>"), sampling=sampling,
                         allowed=vocab["image"], cfg_scale=args.cfg_scale, uncond_prompts=[uncond], generator=generator)
        _write_image(tokenizers.decode_image("image", codes)[0], args.output)
    elif args.image and args.action:
        action = np.array([float(v) for v in args.action.split(",")], dtype=np.float32)
        act = torch.cat([tag("<act>"), tokenizers.encode_vector("action", action[None])[0], tag("</act>")])
        prompt = torch.cat([head, image_tokens(args.image), act, tag("<img>")])
        codes = generate(model, [prompt], n_codes, pad_id=vocab.special("<pad>"), sampling=sampling,
                         allowed=vocab["image"], generator=generator)
        _write_image(tokenizers.decode_image("image", codes)[0], args.output)
    elif args.image:
        prompt = torch.cat([head, image_tokens(args.image), tag("<text>")])
        tokens = generate(model, [prompt], 32, pad_id=vocab.special("<pad>"), sampling=sampling,
                          allowed=vocab.mask("text", "</text>"), eos_id=vocab.special("</text>"), generator=generator)
        print(tokenizers.decode_text(tokens[0]))


def _write_image(image: torch.Tensor, output: str) -> None:
    write_png(image, output)
    print(output)
