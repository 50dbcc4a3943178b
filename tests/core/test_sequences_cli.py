import json


from core.cli import main
from core.data import SequenceDataset


def _write_corpus(path, n=64, scale=1.0):
    lines = []
    for i in range(n):
        turn = "left" if i % 2 else "right"
        lines.append(json.dumps({"segments": [
            {"text": f"turn {turn} at the next light", "condition": True},
            {"vector": [scale * (1.0 if turn == "left" else -1.0), scale * 0.1 * (i % 5)], "name": "action",
             "target": True},
        ], "group": f"drive-{i // 4}"}))
    path.write_text("\n".join(lines) + "\n")


def test_jsonl_to_shards_train_and_eval(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    _write_corpus(corpus)
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "data"), "--text-vocab", "300",
                 "--bins", "16"]) == 0
    dataset = SequenceDataset(tmp_path / "data")
    assert len(dataset) == 64 and dataset.tokenizers().vocab.names == ["special", "text", "action"]
    assert dataset.groups().tolist() == [i // 4 for i in range(64)]  # validation holds out whole drives
    assert main(["pretrain", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-progress",
                 "data.seq_len=32", "train.steps=40", "train.save_every=0", "train.lr=5e-3"]) == 0
    validation = json.loads((tmp_path / "run" / "summary.json").read_text())["validation"]
    assert validation["samples"] == 4 * validation["sources"] > 0  # whole drives of 4 samples each
    capsys.readouterr()
    out = tmp_path / "new" / "folder" / "metrics.json"
    assert main(["eval", "sequences", "--model", str(tmp_path / "run" / "final"), "--data", str(tmp_path / "data"),
                 "--out", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == metrics
    # only the action segment (and its tags, <eos>) is a target: text and action losses are reported apart
    assert set(metrics["per_modality"]) == {"special", "action"}
    assert metrics["per_modality"]["action"]["tokens"] == 64 * 2
    assert metrics["loss"] < 2.0  # untrained: ln(vocab) ~ 5.9
    assert main(["generate", "sequences", "--model", str(tmp_path / "run" / "final"), "--prompt", "turn"]) == 0
    assert capsys.readouterr().out.startswith("turn")
    # the same corpus with actions 3 times larger, tokenized afresh: the same vocabulary layout, other bins
    _write_corpus(corpus, scale=3.0)
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "refit"), "--text-vocab", "300",
                 "--bins", "16"]) == 0
    assert SequenceDataset(tmp_path / "refit").tokenizers().vocab == dataset.tokenizers().vocab
    capsys.readouterr()
    assert main(["eval", "sequences", "--model", str(tmp_path / "run" / "final"), "--data", str(tmp_path / "refit")]) == 2
    assert "refit/tokenizers holds other action tokenizers than" in capsys.readouterr().err
    corpus.write_text('{"segments": [{"vector": [1, 2], "name": "steer", "target": true}]}\n')
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "d"), "--tokenizers",
                 str(tmp_path / "data")]) == 2
    assert "has no bins for vectors named ['steer']; it has ['action']" in capsys.readouterr().err


def test_bad_jsonl_names_file_and_line(tmp_path, capsys):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"segments": [{"text": "ok"}]}\n{"segments": [{"vector": [1, 2]}]}\n')
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "d")]) == 2
    assert f"{corpus}:2: vector segment 0 needs a 'name'" in capsys.readouterr().err
    corpus.write_text('{"segments": [{"text": "ok"}], "group": [1]}\n')
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "d")]) == 2
    assert f"{corpus}:1: 'group' must be a string or an integer, got [1]" in capsys.readouterr().err
    for segment, error in (('{"text": 5}', "segment 0's 'text' must be a string, got 5"),
                           ('{"vector": [1, "x"], "name": "a"}', "segment 0's 'vector' must be a non-empty list of numbers")):
        corpus.write_text('{"segments": [%s]}\n' % segment)
        assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "d")]) == 2
        assert f"{corpus}:1: {error}" in capsys.readouterr().err
    corpus.write_text('{"segments": [{"text": "ok"}]}\n')  # nothing marked as a target
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "d")]) == 2
    assert "no segment is a target" in capsys.readouterr().err
