import json

import numpy as np
import pytest
import torch

import core.precision
from core.backbone import Backbone
from core.data import SequenceDataset
from core.tokenizers import Tokenizers
from core.tokenizers.image import ImageTokenizer, ImageTokenizerConfig
from core.tokenizers.vocab import TokenRange
from core.training import CheckpointError, Trainer, TrainingDiverged, validation_split
from core.training.checkpoint import latest_tag
from core.training.engine import _image_grids, codebook_init
from tests.tiny import tiny_model, tiny_run_config


def test_loss_falls_to_near_zero_on_the_deterministic_toy_task(locate_run):
    out, summary = locate_run
    assert summary["final_loss"] < 0.01 and summary["val_loss"] < 0.01
    # what a user finds in the run folder
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "tokenizers").is_dir()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["loss"] > 1.0 and {"lr", "aux_loss", "tokens_per_s", "expert_imbalance"} <= set(logged[0])


def test_save_stop_resume_gives_the_same_next_losses(locate_data, tmp_path):
    config = tiny_run_config(locate_data, "train.steps=8", "train.save_every=0", "train.grad_accum=2")
    dataset = SequenceDataset(locate_data)
    uninterrupted = Trainer(config, dataset, tmp_path / "a", progress=False)
    uninterrupted.fit()
    expected = [h["loss"] for h in uninterrupted.history]

    stopped = Trainer(config, dataset, tmp_path / "b", progress=False)
    for _ in range(4):
        stopped.train_step()
    stopped.save_checkpoint()
    del stopped  # "stop": a new process would start from the folder alone

    resumed = Trainer(config, dataset, tmp_path / "b", progress=False)
    summary = resumed.fit()
    assert resumed.history[0]["step"] == 5
    assert [h["loss"] for h in resumed.history] == expected[4:]
    # its training time counts the stopped run's up to the checkpoint, which recorded it
    assert summary["resumed_at_step"] == 4 and 0 < resumed.earlier_s
    assert summary["trained_s"] >= resumed.earlier_s + summary["wall_s"]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["resumed_at_step"] == 0


def test_a_resumed_run_logs_each_step_once_and_exports_whole(locate_data, tmp_path):
    config = tiny_run_config(locate_data, "train.steps=6", "train.save_every=4", "train.log_every=1")
    dataset = SequenceDataset(locate_data)
    Trainer(config, dataset, tmp_path, progress=False).fit()
    # as if the run had died after logging steps 5 and 6 but before saving them: it resumes at 4, logs 5.. again
    (tmp_path / "checkpoints" / "latest").write_text("step-00000004")
    longer = tiny_run_config(locate_data, "train.steps=8", "train.save_every=4", "train.log_every=1")
    resumed = Trainer(longer, dataset, tmp_path, progress=False)
    resumed.fit()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    # the export is written aside and moved into place whole, with its training-data record
    assert (tmp_path / "final" / "training_data.json").is_file() and not (tmp_path / ".tmp-final").exists()
    # every process's data position is saved beside its RNG (DeepSpeed keeps rank 0's client state alone)
    own = torch.load(tmp_path / "checkpoints" / "step-00000008" / "rng_rank00000.pt", weights_only=False)
    assert own["data"] == resumed.stream.state_dict()
    # run again when finished: nothing is trained and the run's record stays as it was
    finished = json.loads((tmp_path / "summary.json").read_text())
    again = Trainer(longer, dataset, tmp_path, progress=False)
    assert again.fit() == finished and json.loads((tmp_path / "summary.json").read_text()) == finished
    assert finished["final_loss"] is not None and again.step == 8
    (tmp_path / "summary.json").unlink()  # as if stopped between the export and the summary
    rebuilt = Trainer(longer, dataset, tmp_path, progress=False).fit()
    assert rebuilt["final_loss"] == finished["final_loss"] and rebuilt["steps"] == 8  # the last logged loss


def test_corrupt_or_missing_checkpoint_files_are_named(locate_data, tmp_path):
    config = tiny_run_config(locate_data, "train.steps=2", "train.save_every=1")
    dataset = SequenceDataset(locate_data)
    Trainer(config, dataset, tmp_path, progress=False).fit()
    folder = tmp_path / "checkpoints" / latest_tag(tmp_path / "checkpoints")
    states = folder / "mp_rank_00_model_states.pt"
    states.write_bytes(states.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="corrupt .*mp_rank_00_model_states.pt"):
        Trainer(config, dataset, tmp_path, progress=False).resume()
    states.unlink()
    with pytest.raises(CheckpointError, match="missing: .*mp_rank_00_model_states.pt"):
        Trainer(config, dataset, tmp_path, progress=False).resume()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(locate_data, tmp_path):
    config = tiny_run_config(locate_data, "train.steps=6", "train.save_every=2")
    trainer = Trainer(config, SequenceDataset(locate_data), tmp_path, progress=False)
    for _ in range(2):
        trainer.train_step()
    good = trainer.save_checkpoint()
    with torch.no_grad():
        trainer.model.embed.weight[5:].fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=f"non-finite loss at step 3.*{good.name}"):
        trainer.fit(resume=False)
    assert latest_tag(tmp_path / "checkpoints") == good.name
    resumed = Trainer(config, SequenceDataset(locate_data), tmp_path, progress=False)
    assert resumed.resume() and resumed.step == 2
    # a finite loss whose gradients overflow stops the run too, before its weights are saved
    resumed.engine.get_global_grad_norm = lambda: float("inf")
    with pytest.raises(TrainingDiverged, match=f"non-finite gradient norm at step 3.*{good.name}"):
        resumed.fit()
    assert latest_tag(tmp_path / "checkpoints") == good.name


@pytest.mark.parametrize("overrides", [("train.dtype=bf16",), ("train.zero_stage=2",), ("data.packing=true",)])
def test_bf16_zero2_and_packing_train(locate_data, tmp_path, monkeypatch, overrides):
    monkeypatch.setattr(core.precision, "bf16_is_fast", lambda device: True)  # bf16 even on a CPU that emulates it
    config = tiny_run_config(locate_data, "train.steps=30", "train.save_every=0", "train.lr=1e-2", *overrides)
    trainer = Trainer(config, SequenceDataset(locate_data), tmp_path, progress=False)
    assert trainer.engine.bfloat16_enabled() == ("train.dtype=bf16" in overrides)
    trainer.fit()
    losses = [h["loss"] for h in trainer.history]
    assert all(map(torch.isfinite, torch.tensor(losses))) and sum(losses[-5:]) < sum(losses[:5]) / 2


def test_finetuning_on_data_of_refitted_tokenizers_is_refused(locate_data, tmp_path):
    from core.toy import write_toy_dataset

    Trainer(tiny_run_config(locate_data, "train.steps=1", "train.save_every=0"), SequenceDataset(locate_data),
            tmp_path / "pre", progress=False).fit()
    other = write_toy_dataset(tmp_path / "other", num_scenes=96, tasks=("locate",), seed=1, progress=False)
    assert SequenceDataset(other).tokenizers().vocab == SequenceDataset(locate_data).tokenizers().vocab  # same sizes
    config = tiny_run_config(other, "train.steps=1", f"finetune.init={tmp_path / 'pre' / 'final'}")
    with pytest.raises(ValueError, match=r"holds other .* tokenizers than .*rebuild the data with the pretrained"):
        Trainer(config, SequenceDataset(other), tmp_path / "ft", progress=False)


def test_finetune_experts_only_leaves_shared_weights_frozen(locate_data, tmp_path):
    pretrain = tiny_run_config(locate_data, "train.steps=5", "train.save_every=0")
    Trainer(pretrain, SequenceDataset(locate_data), tmp_path / "pre", progress=False).fit()
    config = tiny_run_config(locate_data, "train.steps=5", "train.save_every=0",
                             f"finetune.init={tmp_path / 'pre' / 'final'}", "finetune.mode=experts")
    trainer = Trainer(config, SequenceDataset(locate_data), tmp_path / "ft", progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".deepspeed_moe." in n for n in changed)  # experts and gates only
    assert all(f"blocks.{i}.ffn.moe.deepspeed_moe.gate.wg.weight" in changed for i in range(2))


def test_validation_split_is_drawn_by_val_seed_not_by_the_training_seed(locate_data, tmp_path):
    dataset = SequenceDataset(locate_data)

    def held_out(*overrides: str) -> list[int]:
        config = tiny_run_config(locate_data, "train.steps=1", *overrides)
        return Trainer(config, dataset, tmp_path / "-".join(overrides), progress=False).val_indices.tolist()

    assert held_out("train.seed=0") == held_out("train.seed=1")  # seeds compare on the same samples
    assert held_out("train.seed=0") != held_out("data.val_seed=1")


def test_warmup_trains_from_the_first_step(locate_data, tmp_path):
    config = tiny_run_config(locate_data, "train.steps=30", "train.warmup_steps=4", "train.lr=1.0e-3",
                             "train.log_every=1")
    trainer = Trainer(config, SequenceDataset(locate_data), tmp_path, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    used = []  # the learning rate each optimizer step takes
    for _ in range(6):
        used.append(trainer.engine.get_lr()[0])
        assert trainer.train_step()["lr"] == used[-1]  # the step's own rate is logged
        if len(used) == 1:
            assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert used[:3] == pytest.approx([2.5e-4, 5.0e-4, 7.5e-4])  # step k of 4 at k / 4 of the peak
    assert used[3] == pytest.approx(1.0e-3, rel=0.01) and used[5] < used[4] < used[3]  # then the cosine decay


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.99])
def test_validation_holds_out_whole_groups(fraction):
    from core.config import DataConfig

    groups = np.sort(np.random.default_rng(0).integers(0, 40, size=500))  # e.g. each window's episode, in runs
    sizes = np.bincount(groups)
    data = DataConfig(val_fraction=fraction, val_seed=3)
    val, train = validation_split(len(groups), data, groups)
    assert sorted(val.tolist() + train.tolist()) == list(range(500)) and len(train) > 0
    assert not set(groups[val]) & set(groups[train])  # no source on both sides
    wanted, left = round(500 * fraction), sorted(set(groups[train].tolist()))
    assert len(val) <= wanted and all(wanted - len(val) < sizes[g] for g in left)  # as close as whole sources go
    held = set(groups[val].tolist())  # the first batches (what evaluate scores) span many of them, not a few runs
    assert len(set(groups[val[:64]].tolist())) >= min(len(held), 10)
    assert np.array_equal(val, validation_split(len(groups), data, groups)[0])
    assert not np.array_equal(val, validation_split(len(groups), DataConfig(val_fraction=fraction, val_seed=4), groups)[0])


def test_validation_warns_when_every_group_is_larger_than_the_fraction(caplog):
    from core.config import DataConfig

    groups = np.repeat([0, 1], [50, 60])  # 5% is 6 samples, and each source is larger
    with caplog.at_level("WARNING", logger="core.training.engine"):
        val, train = validation_split(len(groups), DataConfig(val_fraction=0.05), groups)
    assert len(val) == 50 and set(groups[train]) == {1}  # the smallest source, whole
    assert "the smallest one is held out: 50 samples (45%)" in caplog.text and "data.val_fraction: 0" in caplog.text


def test_validation_without_groups_comes_in_a_random_order():
    from core.config import ConfigError, DataConfig

    val, train = validation_split(1000, DataConfig(val_fraction=0.1, val_seed=2))
    drawn = np.random.default_rng(2).permutation(1000)
    assert np.array_equal(val, drawn[:100]) and np.array_equal(train, drawn[100:])  # the same samples as ever
    assert np.ptp(val[:16]) > 500  # not sorted: the first batches span the data, not its first samples
    for fraction in (-0.05, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"data.val_fraction must be in \[0, 1\)"):
            DataConfig(val_fraction=fraction)


def test_resuming_with_other_settings_is_refused(locate_data, tmp_path):
    dataset = SequenceDataset(locate_data)
    Trainer(tiny_run_config(locate_data, "train.steps=2", "train.save_every=2"), dataset, tmp_path, progress=False).fit()
    other = tiny_run_config(locate_data, "train.steps=4", "train.micro_batch=3", "train.seed=7")
    with pytest.raises(CheckpointError, match=r"other settings \(train.micro_batch: \d+ -> 3; train.seed: \d+ -> 7\)"):
        Trainer(other, dataset, tmp_path, progress=False).resume()
    longer = tiny_run_config(locate_data, "train.steps=4", "train.save_every=1", "train.log_every=1")
    assert Trainer(longer, dataset, tmp_path, progress=False).resume()  # how long and how often may change


def test_a_cut_off_last_log_row_is_dropped_and_a_damaged_one_named(tmp_path):
    from core.training.engine import _last_logged, _trim_log

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')  # killed while writing
    assert _last_logged(log) == {"step": 2, "loss": 1.5}
    _trim_log(log, 5)
    assert log.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
    log.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 2: not a JSON row"):
        _trim_log(log, 5)


def test_validation_of_uneven_or_single_sources():
    from core.config import DataConfig

    data = DataConfig(val_fraction=0.05)
    uneven = np.array([0] * 95 + [1] * 5)
    for seed in range(4):
        val, _ = validation_split(100, DataConfig(val_fraction=0.05, val_seed=seed), uneven)
        assert sorted(val.tolist()) == list(range(95, 100))  # the small source, not the 95
    big = np.array([0] * 50 + [1] * 50)
    assert len(validation_split(100, data, big)[0]) == 50  # every source is larger: one of them
    assert len(validation_split(100, data, np.zeros(100, int))[0]) == 0  # one source: never all of it


def test_validation_loss_is_one_weighted_mean_over_its_batches(tmp_path):
    from core.backbone import lm_loss
    from core.cli import main
    from core.sequence import pad_batch

    corpus = tmp_path / "corpus.jsonl"  # text targets of varying length beside two action bins: batches differ
    corpus.write_text("".join(json.dumps({"segments": [{"text": "go " * (1 + i % 7), "target": True},
                                                       {"vector": [i % 3, 0.5], "name": "action", "target": True}]})
                              + "\n" for i in range(48)))
    assert main(["data", "sequences", "--input", str(corpus), "--out", str(tmp_path / "data"), "--text-vocab", "280",
                 "--bins", "8"]) == 0
    dataset = SequenceDataset(tmp_path / "data")
    config = tiny_run_config(tmp_path / "data", "train.steps=1", "train.loss_weights={action: 1.0e+6}",
                             "data.val_fraction=0.5")
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    action, rows, sums, counts = dataset.tokenizers().vocab["action"], config.train.micro_batch, [], []
    trainer.model.eval()  # as evaluate runs it: no MoE capacity drops, which depend on the batch
    for start in range(0, min(8 * rows, len(trainer.val_indices)), rows):  # evaluate's batches
        batch = pad_batch([dataset[int(i)] for i in trainer.val_indices[start : start + rows]], trainer.pad_id,
                          config.data.seq_len)
        with torch.no_grad():
            logits = trainer.model(batch.input_ids, positions=batch.positions, attention_mask=batch.attention_mask).logits
        targets = batch.loss_mask & (batch.input_ids >= action.start) & (batch.input_ids < action.stop)
        sums.append(lm_loss(logits, batch.input_ids, targets).item() * int(targets[:, 1:].sum()))
        counts.append(int(targets[:, 1:].sum()))
        ids = batch.input_ids[:, 1:][batch.loss_mask[:, 1:]]  # a batch weighs its targets' weights, not their count
        in_range = (ids >= action.start) & (ids < action.stop)
        assert trainer._target_weight(batch) == pytest.approx(1.0e6 * int(in_range.sum()) + int((~in_range).sum()))
    trainer.model.train()
    assert len(counts) > 1 and trainer.evaluate() == pytest.approx(sum(sums) / sum(counts), abs=1e-3)


def test_loss_weights_reweight_the_named_vocabulary_range(locate_data, tmp_path):
    from core.backbone import lm_loss
    from core.sequence import pad_batch

    dataset = SequenceDataset(locate_data)
    position = dataset.tokenizers().vocab["position"]
    config = tiny_run_config(locate_data, "train.steps=1", "train.loss_weights={position: 1.0e+6}")
    trainer = Trainer(config, dataset, tmp_path, progress=False)
    batch = pad_batch([dataset[int(i)] for i in trainer.val_indices[: config.train.micro_batch]], trainer.pad_id,
                      config.data.seq_len)
    with torch.no_grad():
        logits = trainer.model(batch.input_ids, positions=batch.positions, attention_mask=batch.attention_mask).logits
    in_range = (batch.input_ids >= position.start) & (batch.input_ids < position.stop)
    only_positions = lm_loss(logits, batch.input_ids, batch.loss_mask & in_range)
    everything = lm_loss(logits, batch.input_ids, batch.loss_mask)
    weighted = trainer._forward(batch)[0].item()
    assert abs(weighted - only_positions.item()) < 1e-3 and abs(everything.item() - only_positions.item()) > 1e-2
    with pytest.raises(ValueError, match="loss_weights names 'lidar', which is not in the dataset's vocabulary"):
        Trainer(tiny_run_config(locate_data, "train.loss_weights={lidar: 2}"), dataset, tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="bin_smoothing names 'lidar'"):
        Trainer(tiny_run_config(locate_data, "train.bin_smoothing={lidar: 2}"), dataset, tmp_path / "y", progress=False)
    smoothed = Trainer(tiny_run_config(locate_data, "train.bin_smoothing={position: 2}"), dataset, tmp_path / "z",
                       progress=False)
    assert smoothed.smoothing == [(position.start, position.stop, 2.0)]


def test_ordinal_init_makes_neighbouring_bins_alike_and_leaves_other_rows(locate_data, tmp_path):
    dataset = SequenceDataset(locate_data)
    vocab = dataset.tokenizers().vocab
    action = vocab["action"]  # 16 bins
    plain = Trainer(tiny_run_config(locate_data, "train.steps=1"), dataset, tmp_path / "a", progress=False)
    ordinal = Trainer(tiny_run_config(locate_data, "train.steps=1", "train.ordinal_init=[action]"), dataset,
                      tmp_path / "b", progress=False)
    before, after = plain.model.embed.weight.detach(), ordinal.model.embed.weight.detach()
    outside = torch.ones(vocab.size, dtype=torch.bool)
    outside[action.start : action.stop] = False
    assert torch.equal(before[outside], after[outside])  # same seed: only the named range changed

    def neighbour_similarity(rows: torch.Tensor) -> float:
        return torch.nn.functional.cosine_similarity(rows[:-1], rows[1:], dim=-1).mean().item()

    rows = after[action.start : action.stop]
    assert neighbour_similarity(rows) > 0.8 > 0.2 > abs(neighbour_similarity(before[action.start : action.stop]))
    far = torch.nn.functional.cosine_similarity(rows[0], rows[-1], dim=0).abs().item()
    assert far < neighbour_similarity(rows)  # the two ends are not alike: the rows still tell bins apart
    init_std = ordinal.config.model.init_std
    assert 0.5 * init_std < rows.std().item() < 1.5 * init_std
    with pytest.raises(ValueError, match="ordinal_init names 'lidar'"):
        Trainer(tiny_run_config(locate_data, "train.ordinal_init=[lidar]"), dataset, tmp_path / "c", progress=False)


def test_codebook_init_starts_codes_with_alike_vectors_alike(locate_data, tmp_path):
    model = tiny_model()
    before = model.embed.weight.detach().clone()
    span = TokenRange("codes", 4, 8)  # 8 "codes": 4 pairs of nearly equal codebook vectors, the pairs far apart
    centres = torch.randn(4, 6, generator=torch.Generator().manual_seed(1)) * 3
    codebook = centres.repeat_interleave(2, 0) + 0.05 * torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    codebook_init(model, [span], [codebook], seed=0, noise=0.1)
    after = model.embed.weight.detach()
    outside = torch.ones(len(after), dtype=torch.bool)
    outside[span.start : span.stop] = False
    assert torch.equal(before[outside], after[outside])
    rows = after[span.start : span.stop]
    cosine = torch.nn.functional.cosine_similarity(rows[:, None], rows[None], dim=-1)
    pairs = torch.tensor([cosine[2 * i, 2 * i + 1] for i in range(4)])
    others = torch.tensor([cosine[2 * i, 2 * j] for i in range(4) for j in range(4) if i != j]).abs()
    assert pairs.min() > 0.9 and pairs.min() > others.max()
    init_std = model.config.init_std
    assert 0.5 * init_std < rows.std().item() < 1.5 * init_std
    with pytest.raises(ValueError, match="a codebook of shape"):
        codebook_init(model, [span], [codebook[:5]])
    with pytest.raises(ValueError, match="codebook_init names 'action', which is not an image tokenizer"):
        Trainer(tiny_run_config(locate_data, "train.codebook_init=[action]"), SequenceDataset(locate_data), tmp_path / "c",
                progress=False)


def test_image_grids_resolve_from_the_tokenizers_and_fine_tune_a_model_pretrained_without(locate_data, tmp_path):
    camera = ImageTokenizer(ImageTokenizerConfig.tiny())
    tokenizers = Tokenizers(images={"camera": camera})
    span, side = tokenizers.vocab["camera"], camera.config.grid_size
    assert _image_grids(tokenizers, ["camera", [1, 2, 3, 4]]) == [[span.start, span.stop, side, side], [1, 2, 3, 4]]

    dataset = SequenceDataset(locate_data)
    with pytest.raises(ValueError, match="image_grids names 'action', which is not an image tokenizer"):
        Trainer(tiny_run_config(locate_data, "model.image_grids=[action]"), dataset, tmp_path / "a", progress=False)
    Trainer(tiny_run_config(locate_data, "train.steps=2", "train.save_every=0"), dataset, tmp_path / "pre",
            progress=False).fit()
    position = dataset.tokenizers().vocab["position"]  # any range serves as a "grid" here
    grids = f"model.image_grids=[[{position.start}, {position.stop}, 2, 2]]"
    tuned = Trainer(tiny_run_config(locate_data, "train.steps=2", "train.save_every=0", grids,
                                    f"finetune.init={tmp_path / 'pre' / 'final'}"), dataset, tmp_path / "ft", progress=False)
    assert tuned.model.grid_embed is not None
    tuned.fit()
    assert Backbone.from_pretrained(tmp_path / "ft" / "final").config.image_grids == [[position.start, position.stop, 2, 2]]
    with pytest.raises(ValueError, match="pretrained model.image_grids"):
        Trainer(tiny_run_config(locate_data, "model.image_grids=[[1, 3, 2, 1]]", f"finetune.init={tmp_path / 'ft' / 'final'}"),
                dataset, tmp_path / "b", progress=False)
