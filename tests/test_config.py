from pathlib import Path

import pytest

from robustlab.cli.main import main
from robustlab.config import Config, config_to_toml, load_config
from robustlab.config_toml import read_toml
from robustlab.errors import ConfigError


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_and_file_values(tmp_path):
    p = write(tmp_path, "[train]\nepochs = 3\nlr = 1\n[train.attack]\neps = 0.03\n")
    cfg = load_config(p, check_names=False)
    assert cfg.train.epochs == 3
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # ints accepted as floats
    assert cfg.train.attack.eps == 0.03
    assert cfg.model.arch == Config().model.arch


@pytest.mark.parametrize("text, key, words", [
    ("[train]\nepohcs = 3\n", "train.epohcs", "unknown key"),
    ("[trian]\nepochs = 3\n", "trian", "unknown key"),
    ("[train]\nepochs = 'three'\n", "train.epochs", "expected an integer"),
    ("[train]\nepochs = 2.5\n", "train.epochs", "expected an integer"),
    ("[train]\nnesterov = 1\n", "train.nesterov", "true or false"),
    ("[train.attack]\neps = -0.1\n", "train.attack.eps", ">= 0"),
    ("[train]\nlr = 0\n", "train.lr", "> 0"),
    ("[model]\nnorm = 'batch'\n", "model.norm", "not one of"),
    ("[data]\nextra_fraction = 1.5\n", "data.extra_fraction", "<= 1"),
])
def test_bad_values_name_key_and_file(tmp_path, text, key, words):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p, check_names=False)
    msg = str(e.value)
    assert str(p) in msg and key in msg and words in msg


def test_linf_eps_above_one_is_an_error(tmp_path):
    p = write(tmp_path, "[eval.attack]\nnorm = 'linf'\neps = 8\n")
    with pytest.raises(ConfigError, match=r"eval\.attack\.eps"):
        load_config(p)


def test_unknown_names_are_errors(tmp_path):
    for text, key in [("[model]\narch = 'resnet-x'\n", "model.arch"),
                      ("[data]\nname = 'imagenet-99'\n", "data.name"),
                      ("[train]\nobjective = 'magic'\n", "train.objective")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(write(tmp_path, text))


def test_overrides_are_typed_and_checked(tmp_path):
    p = write(tmp_path, "[train]\nepochs = 3\n")
    cfg = load_config(p, ["train.epochs=5", "model.arch=wrn-28-10", "train.attack.eps=0.05"],
                      check_names=False)
    assert cfg.train.epochs == 5 and cfg.model.arch == "wrn-28-10"
    assert cfg.train.attack.eps == 0.05
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(p, ["train.epochs=abc"], check_names=False)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["train.epochs"], check_names=False)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[train\nepochs=3"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_round_trip_through_toml(tmp_path):
    cfg = load_config(None, ["train.milestones=[2, 4]", "run.name='a \"b\"'"], check_names=False)
    p = write(tmp_path, config_to_toml(cfg))
    again = load_config(p, check_names=False)
    assert again == cfg


def test_cli_bad_config_exits_2_with_one_message(tmp_path, capsys):
    p = write(tmp_path, "[train]\nepochs = -1\n")
    rc = main(["train", str(p), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "train.epochs" in err and str(p) in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written for a bad config


def test_train_size_takes_nested_subsets_and_rejects_too_many(tmp_path):
    from helpers import tiny_config

    from robustlab.errors import UserError
    from robustlab.experiments.common import load_splits

    def train_images(size):
        cfg = load_config(tiny_config(tmp_path, data={"train_size": size}))
        return load_splits(cfg)[0]

    full, small, large = train_images(0), train_images(50), train_images(200)
    assert (len(full), len(small), len(large)) == (320, 50, 200)
    rows = {tuple(im.flatten().tolist()) for im in large.images}
    assert all(tuple(im.flatten().tolist()) in rows for im in small.images)
    with pytest.raises(UserError, match="train_size = 400 exceeds the 320"):
        train_images(400)


def test_every_example_run_config_loads_and_names_what_its_script_globs():
    """Every training config in examples/ parses with its names checked, and carries the run
    name its script finds it by (compare_objectives.sh globs fmnist-<objective>, bn_study.sh
    bn-<setting>), so a typo shows here and not an hour into a study."""
    root = Path(__file__).resolve().parents[1] / "examples"
    checked = 0
    for path in sorted([*root.glob("*.toml"), *root.glob("zoo/*.toml")]):
        if "train" not in read_toml(path):
            continue  # a zoo or sweep spec, not a run config
        cfg = load_config(path)
        stem = path.stem
        if stem.startswith("fashion-mnist-"):
            assert cfg.run.name == "fmnist-" + stem.removeprefix("fashion-mnist-"), path
        if stem.startswith("bn-study-"):
            assert cfg.run.name == "bn-" + stem.removeprefix("bn-study-"), path
        checked += 1
    assert checked >= 20
