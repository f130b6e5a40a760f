"""Published architectures with RobustBench's parameter names: strict loading of state dicts
from independently written reference networks, equal logits, parameter counts, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustlab
from robustlab import models
from robustlab.errors import UserError
from robustlab.models.robustbench import DM_STATS, read_model_info, read_state_dict


# ---------------------------------------------------------------- reference networks (tests only)
class RefDMBlock(nn.Module):
    """DeepMind WRN block as RobustBench's dm_wide_resnet.py names it, written independently."""

    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.batchnorm_0, self.relu_0 = nn.BatchNorm2d(cin), act()
        self.conv_0 = nn.Conv2d(cin, cout, 3, stride, 0, bias=False)
        self.batchnorm_1, self.relu_1 = nn.BatchNorm2d(cout), act()
        self.conv_1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.has_shortcut = cin != cout
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if self.has_shortcut \
            else None
        self.pad = nn.ZeroPad2d((1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))

    def forward(self, x):
        if self.has_shortcut:
            x = self.relu_0(self.batchnorm_0(x))
            h = self.conv_0(self.pad(x))
        else:
            h = self.conv_0(self.pad(self.relu_0(self.batchnorm_0(x))))
        h = self.conv_1(self.relu_1(self.batchnorm_1(h)))
        return h + (self.shortcut(x) if self.has_shortcut else x)


class RefDMGroup(nn.Module):
    def __init__(self, n, cin, cout, stride, act):
        super().__init__()
        self.block = nn.Sequential(*[RefDMBlock(cin if i == 0 else cout, cout,
                                                stride if i == 0 else 1, act) for i in range(n)])

    def forward(self, x):
        return self.block(x)


class RefDMWRN(nn.Module):
    def __init__(self, depth, width, act=nn.ReLU, classes=10):
        super().__init__()
        n, c = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
        mean, std = DM_STATS["cifar10"]
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)
        self.init_conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.layer = nn.Sequential(RefDMGroup(n, c[0], c[1], 1, act),
                                   RefDMGroup(n, c[1], c[2], 2, act),
                                   RefDMGroup(n, c[2], c[3], 2, act))
        self.batchnorm, self.relu = nn.BatchNorm2d(c[3]), act()
        self.logits = nn.Linear(c[3], classes)

    def forward(self, x):
        h = self.layer(self.init_conv((x - self.mean) / self.std))
        h = F.avg_pool2d(self.relu(self.batchnorm(h)), 8)
        return self.logits(h.flatten(1))


class RefTradesBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0,
                                                              bias=False)

    def forward(self, x):
        if not self.equal:
            x = self.relu1(self.bn1(x))
            out = self.conv1(x)
        else:
            out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + (x if self.equal else self.convShortcut(x))


class RefTradesWRN(nn.Module):
    def __init__(self, depth, widen):
        super().__init__()
        n, c = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        for i, (a, b, s) in enumerate([(c[0], c[1], 1), (c[1], c[2], 2), (c[2], c[3], 2)]):
            blk = nn.Module()
            blk.layer = nn.Sequential(*[RefTradesBlock(a if j == 0 else b, b, s if j == 0 else 1)
                                        for j in range(n)])
            self.add_module(f"block{i + 1}", blk)
        self.bn1, self.relu = nn.BatchNorm2d(c[3]), nn.ReLU()
        self.fc = nn.Linear(c[3], 10)

    def forward(self, x):
        h = self.conv1(x)
        for i in (1, 2, 3):
            h = getattr(self, f"block{i}").layer(h)
        return self.fc(F.avg_pool2d(self.relu(self.bn1(h)), 8).flatten(1))


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and non-trivial BN statistics, so a wrong mapping shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return net.eval()


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("act,arch", [(nn.ReLU, "dm-wrn-16-2"), (nn.SiLU, "dm-wrn-16-2-swish")])
def test_dm_wrn_state_dict_loads_strictly_with_equal_logits(tmp_path, act, arch):
    ref = _randomise(RefDMWRN(16, 2, act), 0)
    f = tmp_path / "Ref.pt"
    # DataParallel prefix and a 'state_dict' wrapper, as some RobustBench files have them.
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, f)
    model = robustlab.load_model(f, arch=arch, dataset="cifar10")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)


def test_trades_wrn_state_dict_loads_strictly_with_equal_logits(tmp_path):
    ref = _randomise(RefTradesWRN(16, 2), 2)
    f = tmp_path / "trades.pt"
    torch.save(ref.state_dict(), f)
    model = models.load_model(f, arch="trades-wrn-16-2", dataset="cifar10")
    assert model.config["mean"] is None  # the TRADES models take raw [0, 1] inputs
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)


def test_dm_preact_keys_and_shortcut_shape():
    m = models.create("dm-preact-resnet-18", width=4)
    keys = m.net.state_dict()
    assert "conv_2d.weight" in keys and "logits.weight" in keys
    assert keys["layer_1.0.shortcut.weight"].shape == (8, 4, 3, 3)  # 3x3 shortcut (DeepMind)
    assert "layer_0.0.shortcut.weight" not in keys


def test_key_mismatch_is_one_clear_error(tmp_path):
    ref = RefDMWRN(10, 1)
    state = ref.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["logits.bias"]
    f = tmp_path / "bad.pt"
    torch.save(state, f)
    with pytest.raises(UserError, match=r"1 missing: logits\.bias.*1 unexpected: extra\.weight"):
        models.load_model(f, arch="dm-wrn-10-1")
    # 'module.' is stripped only as a prefix: inside a key it stays and is reported.
    torch.save({k.replace("init_conv", "init_module.conv"): v
                for k, v in ref.state_dict().items()}, f)
    with pytest.raises(UserError, match="init_module.conv.weight"):
        models.load_model(f, arch="dm-wrn-10-1")


def test_pickled_objects_refused_with_conversion_hint(tmp_path):
    f = tmp_path / "model.pt"
    torch.save({"state_dict": RefDMWRN(10, 1).state_dict(), "args": _Opaque()}, f)
    with pytest.raises(UserError, match="unpickling.*convert"):
        read_state_dict(f)
    with pytest.raises(UserError, match="arch="):
        models.load_model(f)


class _Opaque:  # an arbitrary object, as training scripts pickle their argparse namespaces
    pass


def test_model_info_and_convert(tmp_path):
    from robustlab.cli.main import main

    ref = _randomise(RefDMWRN(10, 1), 4)
    f = tmp_path / "Gowal2020Uncovering.pt"
    torch.save(ref.state_dict(), f)
    info = {"name": "Gowal2020Uncovering", "architecture": "WideResNet-10-1",
            "clean_acc": "85.29", "autoattack_acc": "57.20"}
    (tmp_path / "Gowal2020Uncovering.json").write_text(json.dumps(info))
    assert read_model_info(f)["autoattack_acc"] == "57.20"
    assert read_model_info(tmp_path / "nothing.pt") is None
    out = tmp_path / "conv.safetensors"
    assert main(["models", "convert", str(f), str(out), "--arch", "dm-wrn-10-1"]) == 0
    assert read_model_info(out)["name"] == "Gowal2020Uncovering"
    back = models.load_model(out)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,params", [("dm-wrn-28-10", 36_479_194),
                                         ("dm-wrn-70-16", 266_796_506),
                                         ("dm-wrn-70-16-swish", 266_796_506),
                                         ("trades-wrn-34-10", 46_160_474)])
def test_published_parameter_counts(name, params):
    with torch.device("meta"):
        m = models.create(name)
    assert models.count_params(m) == params


def test_published_families_take_bn_only():
    with pytest.raises(UserError, match="batch norm only"):
        models.create("dm-wrn-28-10", norm="gn")


def test_models_list_shows_published_families(capsys):
    from robustlab.cli.main import main

    assert main(["models", "list", "--names", "dm-wrn-28-10", "trades-wrn-34-10"]) == 0
    out = capsys.readouterr().out
    for form in ("dm-wrn-D-W-swish", "dm-preact-resnet-18", "trades-wrn-D-W", "36.48M"):
        assert form in out


def test_mean_std_in_the_file_become_the_normalisation(tmp_path):
    ref = _randomise(RefDMWRN(10, 1), 5)
    ref.mean.fill_(0.5)
    ref.std.fill_(0.25)
    f = tmp_path / "old.pt"
    torch.save({**ref.state_dict(), "mean": ref.mean.clone(), "std": ref.std.clone()}, f)
    model = models.load_model(f, arch="dm-wrn-10-1")
    assert model.config["mean"] == [0.5] * 3
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.save({**RefTradesWRN(10, 1).state_dict(), "mean": ref.mean.clone()}, f)
    with pytest.raises(UserError, match="1 unexpected: mean"):
        models.load_model(f, arch="trades-wrn-10-1")  # no normalisation to put them in
