"""Grid config parsing: good configs round-trip, bad ones name the file, the key and the choices."""

from __future__ import annotations

import pytest
from exp_helpers import small_grid

from dece.experiments import ConfigError, GridConfig, load_grid_config


def test_load_round_trip(write_config):
    path = write_config(small_grid())
    config = load_grid_config(path)
    assert config.name == "small"
    assert [a.label for a in config.attacks] == ["BadPre", "RIPPLe"]
    assert [s.label for s in config.losses] == ["CE", "DeCE"]
    assert config.rates == [0.0, 0.05]
    assert config.runner == "dece.experiments.fake:fake_run_cell"
    again = GridConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()


def test_name_defaults_to_file_stem(write_config):
    data = small_grid()
    del data["name"]
    assert load_grid_config(write_config(data, "my_grid.yaml")).name == "my_grid"


def test_scalars_and_shorthands(write_config):
    data = small_grid(attacks="badpre", losses=["ce", "dece"], rates="5e-2", seeds=7)
    config = load_grid_config(write_config(data))
    assert config.attacks[0].trigger == "badpre" and config.attacks[0].payload == "sql_injection"
    assert [s.name for s in config.losses] == ["ce", "dece"]
    assert config.rates == [0.05]  # PyYAML reads 5e-2 as a string; accepted as a number
    assert config.seeds == [7]


def test_sweep_expands_product_with_labels(write_config):
    losses = [
        {"name": "dece", "args": {"label_smoothing": 0.1}, "sweep": {"alpha_base": [0.9, 0.99]}},
        {
            "name": "dece",
            "label": "D",
            "sweep": {"alpha_base": [0.9, 0.99], "label_smoothing": [0.0, 0.2]},
        },
    ]
    config = load_grid_config(write_config(small_grid(losses=losses)))
    assert [(s.args, s.label) for s in config.losses[:2]] == [
        ({"label_smoothing": 0.1, "alpha_base": 0.9}, "DeCE(alpha=0.9)"),
        ({"label_smoothing": 0.1, "alpha_base": 0.99}, "DeCE(alpha=0.99)"),
    ]
    assert [s.label for s in config.losses[2:]] == [
        "D(alpha=0.9,eps=0.0)", "D(alpha=0.9,eps=0.2)", "D(alpha=0.99,eps=0.0)", "D(alpha=0.99,eps=0.2)",
    ]  # fmt: skip


def test_repeated_trigger_gets_payload_in_label(write_config):
    attacks = [{"trigger": "badpre"}, {"trigger": "badpre", "payload": "infinite_loop"}]
    config = load_grid_config(write_config(small_grid(attacks=attacks)))
    assert [a.label for a in config.attacks] == ["BadPre+sql_injection", "BadPre+infinite_loop"]


@pytest.mark.parametrize(
    ("patch", "key", "allowed"),
    [
        ({"rtaes": [0.1]}, "'rtaes'", "allowed: name, description, datasets"),
        ({"attacks": [{"trigger": "nope"}]}, "'attacks[0].trigger'", "allowed: "),
        (
            {"attacks": [{"trigger": "badpre", "payload": "zzz"}]},
            "'attacks[0].payload'",
            "sql_injection",
        ),
        (
            {"attacks": [{"trigger": "badpre", "trigerr_args": {}}]},
            "'attacks[0].trigerr_args'",
            "trigger_args",
        ),
        ({"losses": [{"name": "xent"}]}, "'losses[0].name'", "dece"),
        (
            {"attacks": ["badpre", {"trigger": "badpre", "trigger_args": [1]}]},
            "'attacks[1].trigger_args'",
            "valid dictionary, got [1]",
        ),
        ({"losses": [{"name": "ce", "label": 5}]}, "'losses[0].label'", "valid string, got 5"),
        ({"losses": [{"label": "CE"}]}, "'losses[0].name'", "missing required key"),
        ({"defenses": [{"name": ""}]}, "'defenses[0].name'", "at least 1 character"),
        ({"defenses": [3]}, "'defenses[0]'", "mapping with keys name, args, label"),
        (
            {"losses": [{"name": "ce", "arg": {}}]},
            "'losses[0].arg'",
            "allowed: name, args, label, sweep",
        ),
        ({"rates": [1.5]}, "'rates[0]'", "[0, 1)"),
        ({"rates": ["lots"]}, "'rates[0]'", "number"),
        ({"seeds": [-1]}, "'seeds[0]'", "non-negative integer"),
        ({"seeds": [1.5]}, "'seeds[0]'", "non-negative integer"),
        ({"datasets": []}, "'datasets'", "non-empty list"),
        ({"training": {"seed": 4}}, "'training.seed'", "seeds"),
        ({"runner": "no_colon"}, "'runner'", "module:function"),
    ],
)
def test_errors_name_file_key_and_allowed(write_config, patch, key, allowed):
    path = write_config(small_grid(**patch))
    with pytest.raises(ConfigError) as info:
        load_grid_config(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key {key}" in message
    assert allowed in message


def test_missing_required_key(write_config):
    data = small_grid()
    del data["losses"]
    path = write_config(data)
    with pytest.raises(ConfigError, match=r"grid\.yaml: key 'losses': missing required key"):
        load_grid_config(path)


def test_not_a_mapping_and_bad_yaml(write_config):
    with pytest.raises(ConfigError, match="key '<root>'"):
        load_grid_config(write_config("- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_grid_config(write_config("a: [1, 2\n"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_grid_config("/nonexistent/grid.yaml")


def test_check_cells_validates_loss_args_and_training_keys_and_values(write_config):
    from dece.experiments.runner import check_cells

    path = write_config(small_grid(training={"batch_sz": 4}))
    with pytest.raises(ConfigError) as info:  # at load when dece.training is imported, else here
        check_cells(load_grid_config(path))
    assert "grid.yaml: key 'training.batch_sz': unknown key; allowed:" in str(info.value)
    assert "batch_size" in str(info.value) and "num_epochs" in str(info.value)

    bad_args = load_grid_config(
        write_config(small_grid(losses=[{"name": "dece", "args": {"alpah": 1}}]))
    )
    with pytest.raises(ConfigError, match=r"key 'losses\[0\]\.args'.*alpha_base"):
        check_cells(bad_args)
    # training values are type-checked when the grid is loaded, before any cell runs
    for bad in ({"batch_size": "big"}, {"num_epochs": "ten"}):
        with pytest.raises(ConfigError) as info:
            load_grid_config(write_config(small_grid(training=bad)))
        (key,) = bad
        assert f"grid.yaml: key 'training.{key}'" in str(info.value)
