import pytest

from core.config import ConfigError, load_config


def test_presets_and_dotted_overrides():
    config = load_config("small", ["model.num_experts=8", "train.lr=1e-2", "data.packing=true"])
    assert config.name == "small" and config.model.num_experts == 8 and config.model.d_model == 512
    assert config.train.lr == 0.01 and config.data.packing is True


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.num_expert' \(did you mean 'model.num_experts'\?\)"):
        load_config("tiny", ["model.num_expert=8"])
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config("tiny", ["trian.steps=3"])


def test_wrong_types_and_values_are_named():
    with pytest.raises(ConfigError, match="model.n_layers must be int, got 'two'"):
        load_config("tiny", ["model.n_layers=two"])
    with pytest.raises(ConfigError, match="ZeRO-3"):
        load_config("tiny", ["train.zero_stage=3"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no-such-preset")


def test_loss_weights_map_names_to_positive_numbers():
    assert load_config("tiny", ["train.loss_weights={waypoint: 10}"]).train.loss_weights == {"waypoint": 10}
    for bad in ("{waypoint: -1}", "{waypoint: x}", "[waypoint]"):
        with pytest.raises(ConfigError, match="train.loss_weights must map"):
            load_config("tiny", [f"train.loss_weights={bad}"])
    with pytest.raises(ConfigError, match="train.bin_smoothing must map"):
        load_config("tiny", ["train.bin_smoothing={waypoint: 0}"])
    assert load_config("tiny", ["train.ordinal_init=[waypoint, status]"]).train.ordinal_init == ["waypoint", "status"]
    with pytest.raises(ConfigError, match="train.ordinal_init must be a list of vocabulary names"):
        load_config("tiny", ["train.ordinal_init=waypoint"])
