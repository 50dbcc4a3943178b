import json

import numpy as np
import pytest
import torch

from core.data import BatchStream, SequenceDataset


@pytest.mark.parametrize("packing", [False, True])
def test_batch_stream_resumes_exactly(locate_data, packing):
    dataset = SequenceDataset(locate_data)
    pad = dataset.tokenizers().vocab.special("<pad>")
    stream = BatchStream(dataset, np.arange(len(dataset)), rows=4, seq_len=48, pad_id=pad, packing=packing, seed=3)
    for _ in range(30):  # crosses epoch boundaries
        stream.next()
    state = stream.state_dict()
    expected = [stream.next() for _ in range(3)]
    resumed = BatchStream(dataset, np.arange(len(dataset)), rows=4, seq_len=48, pad_id=pad, packing=packing, seed=3)
    resumed.load_state_dict(state)
    for batch, again in zip(expected, (resumed.next() for _ in range(3))):
        assert torch.equal(batch.input_ids, again.input_ids) and torch.equal(batch.loss_mask, again.loss_mask)
    if packing:  # several 16-token samples share each 48-token row
        assert expected[0].input_ids.shape == (4, 48) and int(expected[0].document_ids.max()) == 3


def test_missing_or_damaged_dataset_files_are_named(locate_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        SequenceDataset(tmp_path)
    for name in ("manifest.json", "shard-00000.npz"):
        (tmp_path / name).write_bytes((locate_data / name).read_bytes())
    (tmp_path / "shard-00000.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read shard .*shard-00000.npz"):
        SequenceDataset(tmp_path)[0]


def test_results_json_is_strict_nan_and_inf_become_null(tmp_path, capsys):
    from core.data import report_json

    results = {"l2": {"avg": float("nan"), "1s": 0.5}, "rates": [float("inf"), 1.0], "pair": (float("-inf"), 2)}
    report_json(results, tmp_path / "deep" / "eval.json")
    written = json.loads((tmp_path / "deep" / "eval.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert written == {"l2": {"avg": None, "1s": 0.5}, "rates": [None, 1.0], "pair": [None, 2]}
    assert json.loads(capsys.readouterr().out) == written


def test_json_is_written_atomically_into_a_new_folder(tmp_path):
    from core.data import write_json_atomic

    path = tmp_path / "new" / "folder" / "report.json"
    write_json_atomic(path, {"psnr": 30.5})
    write_json_atomic(path, {"psnr": 31.0})  # replaces the file whole
    assert json.loads(path.read_text()) == {"psnr": 31.0} and sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_groups_name_each_samples_source_and_old_folders_have_none(locate_data, tmp_path):
    from core.data import ShardWriter

    source = SequenceDataset(locate_data)
    with ShardWriter(tmp_path / "grouped", source.tokenizers(), samples_per_shard=2) as writer:
        for index, group in enumerate(["scene-a", ("episode", 7), "scene-a", None, ("episode", 7)]):
            writer.add(source[index], group)
    grouped = SequenceDataset(tmp_path / "grouped")
    assert grouped.groups().tolist() == [0, 1, 0, 2, 1]  # across shards; the ungrouped sample alone
    assert torch.equal(grouped[3].token_ids, source[3].token_ids)
    with ShardWriter(tmp_path / "ungrouped", source.tokenizers()) as writer:
        writer.add(source[0])
    assert SequenceDataset(tmp_path / "ungrouped").groups() is None
    with np.load(locate_data / "shard-00000.npz") as shard:  # a folder written before groups existed
        np.savez(tmp_path / "old.npz", **{k: shard[k] for k in shard.files if k != "groups"})
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_bytes((locate_data / "manifest.json").read_bytes())
    (tmp_path / "old.npz").rename(old / "shard-00000.npz")
    assert SequenceDataset(old).groups() is None and len(SequenceDataset(old)[0]) > 0
