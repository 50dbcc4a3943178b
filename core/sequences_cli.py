"""`uwm data|eval|generate sequences`: the generic path for your own text and vector data.

Input is JSON lines, one sample per line, a list of segments in order::

    {"segments": [{"text": "turn left at the light"},
                  {"vector": [0.1, -2.0], "name": "action", "target": true}], "group": "drive-17"}

`text` segments use a byte-level BPE fitted on the corpus; `vector` segments use per-dimension
quantile bins fitted per `name`. `target` marks what the model learns to predict; `condition`
marks what classifier-free guidance may drop. Text is wrapped in `<text>...</text>`, vectors in
`<state>...</state>`. The optional `group` (a string or an integer) names the source a sample comes from (an
episode, a recording): validation then holds out whole groups (`core.training.validation_split`).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .sequence import Segment, build_example
from .tokenizers import BinTokenizer, TextTokenizer, Tokenizers, check_same_tokenizers

__all__ = ["add_arguments", "run", "read_jsonl", "evaluate_sequences"]


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "data":
        parser.add_argument("--input", required=True, help="JSON lines of {'segments': [...]}")
        parser.add_argument("--out", required=True, help="sequence-shard folder to write")
        parser.add_argument("--text-vocab", type=int, default=4096, help="BPE vocabulary size")
        parser.add_argument("--bins", type=int, default=256, help="bins per vector dimension")
        parser.add_argument("--tokenizers", help="reuse the tokenizers of this dataset folder")
        return
    parser.add_argument("--model", required=True, help="an exported model folder (final/)")
    if command == "eval":
        parser.add_argument("--data", required=True, help="sequence-shard folder to score")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--out", help="write the metrics JSON here")
    else:
        parser.add_argument("--prompt", required=True, help="text to continue")
        parser.add_argument("--max-new-tokens", type=int, default=64)
        parser.add_argument("--temperature", type=float, default=0.0)
        parser.add_argument("--top-p", type=float, default=1.0)
        parser.add_argument("--seed", type=int, default=0)


def read_jsonl(path: str | Path) -> list[dict]:
    """Samples ({"segments": [segment dicts], "group": str | int | None}) from a JSON-lines file, with errors
    naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
            segments, group = record["segments"], record.get("group")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{where}: expected a JSON object with a 'segments' list ({error})") from None
        if group is not None and (isinstance(group, bool) or not isinstance(group, (str, int))):
            raise ValueError(f"{where}: 'group' must be a string or an integer, got {group!r}")
        if not isinstance(segments, list) or not segments:
            raise ValueError(f"{where}: 'segments' must be a non-empty list")
        for i, segment in enumerate(segments):
            if not isinstance(segment, dict) or ("text" in segment) == ("vector" in segment):
                raise ValueError(f"{where}: segment {i} needs exactly one of 'text' or 'vector'")
            if "vector" in segment and "name" not in segment:
                raise ValueError(f"{where}: vector segment {i} needs a 'name' (e.g. 'action')")
            if "text" in segment and not isinstance(segment["text"], str):
                raise ValueError(f"{where}: segment {i}'s 'text' must be a string, got {segment['text']!r}")
            if "vector" in segment and not _is_numbers(segment["vector"]):
                raise ValueError(f"{where}: segment {i}'s 'vector' must be a non-empty list of numbers, "
                                 f"got {segment['vector']!r}")
        samples.append({"segments": segments, "group": group})
    if not samples:
        raise ValueError(f"{path} holds no samples")
    if not any(s.get("target") for sample in samples for s in sample["segments"]):
        raise ValueError(f"{path}: no segment is a target (\"target\": true), so there is nothing to learn or score")
    return samples


def _is_numbers(vector) -> bool:
    return (isinstance(vector, list) and len(vector) > 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector))


def _check_covered(samples: list[dict], tokenizers: Tokenizers, source: str) -> None:
    """Every text and vector name of `samples` must have a tokenizer among the reused ones (from `source`)."""
    segments = [s for sample in samples for s in sample["segments"]]
    if tokenizers.text is None and any("text" in s for s in segments):
        raise ValueError(f"--tokenizers {source} has no text tokenizer, and the samples hold text")
    missing = sorted({s["name"] for s in segments if "vector" in s} - set(tokenizers.bins))
    if missing:
        raise ValueError(f"--tokenizers {source} has no bins for vectors named {missing}; it has {sorted(tokenizers.bins)}")


def _fit(samples: list[dict], text_vocab: int, num_bins: int) -> Tokenizers:
    texts = [s["text"] for sample in samples for s in sample["segments"] if "text" in s]
    vectors: dict[str, list] = defaultdict(list)
    for sample in samples:
        for s in sample["segments"]:
            if "vector" in s:
                vectors[s["name"]].append(s["vector"])
    bins = {}
    for name, values in vectors.items():
        try:
            array = np.asarray(values, dtype=np.float64)
        except ValueError:
            raise ValueError(f"vectors named {name!r} have different lengths") from None
        bins[name] = BinTokenizer(num_bins, "quantile").fit(array)
    text = TextTokenizer().fit(texts, vocab_size=text_vocab) if texts else None
    return Tokenizers(text, bins=bins)


def _segment(tokenizers: Tokenizers, spec: dict) -> Segment:
    flags = {"is_target": bool(spec.get("target", False)), "is_condition": bool(spec.get("condition", False))}
    vocab = tokenizers.vocab
    if "text" in spec:
        return Segment.tagged(vocab, "text", tokenizers.encode_text(spec["text"]), ("<text>", "</text>"), **flags)
    ids = tokenizers.encode_vector(spec["name"], np.asarray(spec["vector"], dtype=np.float64))
    return Segment.tagged(vocab, spec["name"], ids, ("<state>", "</state>"), **flags)


@torch.no_grad()
def evaluate_sequences(model, dataset, batch_size: int = 16) -> dict:
    """Target-token loss and perplexity over a shard folder, overall and per modality."""
    import torch.nn.functional as F

    from .sequence import pad_batch

    vocab = dataset.tokenizers().vocab
    totals, counts = defaultdict(float), defaultdict(int)
    for lo in tqdm(range(0, len(dataset), batch_size), desc="eval", leave=False):
        batch = pad_batch([dataset[i] for i in range(lo, min(lo + batch_size, len(dataset)))], vocab.special("<pad>"))
        logits = model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        targets, mask = batch.input_ids[:, 1:], batch.loss_mask[:, 1:]
        losses = F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
        modalities = batch.modality_ids[:, 1:]
        for index, name in enumerate(vocab.names):
            selected = mask & (modalities == index)
            totals[name] += float(losses[selected].sum())
            counts[name] += int(selected.sum())
    total_loss, total_count = sum(totals.values()), sum(counts.values())
    if total_count == 0:
        raise ValueError(f"{dataset.directory} has no target tokens to score")
    per_modality = {name: {"loss": totals[name] / counts[name], "perplexity": float(np.exp(totals[name] / counts[name])),
                           "tokens": counts[name]} for name in vocab.names if counts[name]}
    return {"samples": len(dataset), "target_tokens": total_count, "loss": total_loss / total_count,
            "perplexity": float(np.exp(total_loss / total_count)), "per_modality": per_modality}


def run(command: str, args: argparse.Namespace) -> None:
    from .data import SequenceDataset, ShardWriter, report_json

    if command == "data":
        samples = read_jsonl(args.input)
        if args.tokenizers:
            tokenizers = SequenceDataset(args.tokenizers).tokenizers()
            _check_covered(samples, tokenizers, args.tokenizers)
        else:
            tokenizers = _fit(samples, args.text_vocab, args.bins)
        with ShardWriter(args.out, tokenizers, meta={"task": "sequences", "source": str(args.input)}) as writer:
            for sample in tqdm(samples, desc="sequences"):
                writer.add(build_example([_segment(tokenizers, s) for s in sample["segments"]], tokenizers.vocab),
                           sample["group"])
        print(json.dumps({"dataset": str(args.out), "samples": len(samples), "vocab": repr(tokenizers.vocab)}, indent=1))
        return
    from .pretrained import load_pretrained

    if command == "eval":
        dataset = SequenceDataset(args.data)
        check_same_tokenizers(Path(args.model) / "tokenizers", dataset.directory / "tokenizers",
                              "build the data with them (`uwm data sequences ... --tokenizers <the model's data>`)")
    model, tokenizers = load_pretrained(args.model)
    if command == "eval":
        report_json(evaluate_sequences(model, dataset, args.batch_size), args.out)
    else:
        from .generation import SamplingConfig, generate

        vocab = tokenizers.vocab
        prompt = torch.cat([torch.tensor([vocab.special("<bos>"), vocab.special("<text>")]), tokenizers.encode_text(args.prompt)])
        tokens = generate(model, [prompt], args.max_new_tokens, pad_id=vocab.special("<pad>"),
                          sampling=SamplingConfig(temperature=args.temperature, top_p=args.top_p),
                          allowed=vocab.mask("text", "</text>"), eos_id=vocab.special("</text>"),
                          generator=torch.Generator().manual_seed(args.seed))
        print(args.prompt + tokenizers.decode_text(tokens[0]))
