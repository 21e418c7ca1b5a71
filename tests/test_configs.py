"""Configs from JSON: every value must have its field's type; the error names the field."""

import pytest

from genlab import GenlabError, TrainConfig, VAEConfig, load_dataset
from genlab.configs import build_config


@pytest.mark.parametrize("cls, values, message", [
    (TrainConfig, {"seed": True}, "seed must be an integer, not True"),
    (TrainConfig, {"epochs": "10"}, "epochs must be an integer"),
    (TrainConfig, {"lr": "0.001"}, "lr must be a finite number"),
    (TrainConfig, {"patience": 2.5}, "patience must be an integer or null"),
    (VAEConfig, {"input_shape": [1, 8, 8], "hidden": [64, "wide"]}, "hidden must be a list of integers"),
    (VAEConfig, {"input_shape": [1, 8, 8], "beta": None}, "beta must be a finite number"),
])
def test_a_value_of_the_wrong_type_names_its_field(cls, values, message):
    with pytest.raises(GenlabError, match=message):
        build_config(cls, values, "test")


def test_strings_are_never_taken_for_switches():
    with pytest.raises(GenlabError, match="hflip must be true or false, not 'false'"):
        load_dataset("digits", hflip="false")


def test_json_numbers_and_lists_become_the_fields_types():
    config = build_config(TrainConfig, {"lr": 1, "seed": 3}, "train")
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert build_config(VAEConfig, {"input_shape": [1, 8, 8], "hidden": [32, 16]}, "vae").hidden == (32, 16)


@pytest.mark.parametrize("make", [
    lambda: VAEConfig(input_shape=(2,), latent_dim=True),
    lambda: __import__("genlab").GANConfig(input_shape=(2,), noise_dim=True),
    lambda: __import__("genlab").models.FlowConfig(input_shape=(2,), layers=True),
    lambda: TrainConfig(epochs=True),
])
def test_every_config_refuses_a_switch_for_a_count_the_same_way(make):
    """One check for every count (configs.whole): True is not 1, in any family."""
    with pytest.raises(GenlabError, match="must be"):
        make()
