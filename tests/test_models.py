import json

import pytest
import torch
from torch import nn

import robustlab
from robustlab import models
from robustlab.cli.main import main as cli_main
from robustlab.errors import UserError
from robustlab.models import MixBatchNorm2d, bn_route, count_flops, count_params, create


def tiny(name, **kw):
    kw.setdefault("width", 4)
    return create(name, **kw)


def test_cnn_small_param_count_matches_hand_count():
    # Carlini & Wagner's MNIST net on 1x28x28, 10 classes, no norm (weights + biases):
    # conv 1->32: 9*1*32+32 = 320;     conv 32->32: 9*32*32+32 = 9,248   (28 -> 26 -> 24, pool 12)
    # conv 32->64: 9*32*64+64 = 18,496; conv 64->64: 9*64*64+64 = 36,928 (12 -> 10 -> 8, pool 4)
    # fc 64*4*4=1024->200: 205,000; fc 200->200: 40,200; fc 200->10: 2,010
    # total 320+9248+18496+36928+205000+40200+2010 = 312,202
    m = create("cnn-small", 10, 1, "none", image_size=28)
    assert count_params(m) == 312_202
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    # 32x32 input: 32 -> 28 -> 14 -> 10 -> 5, so the first fc has 64*25 inputs instead of 1024.
    m32 = create("cnn-small", 10, 3, "none", image_size=32)
    assert count_params(m32) == 312_202 + 9 * 2 * 32 + (1600 - 1024) * 200


@pytest.mark.parametrize("name, size", [
    ("cnn-small", 28), ("resnet-10", 32), ("resnet-18", 32), ("resnet-50", 32),
    ("resnet-26", 32), ("resnet-18", 72), ("wrn-16-2", 32), ("wrn-10-1", 32),
    ("preact-resnet-18", 32)])
def test_forward_shapes_every_family(name, size):
    m = tiny(name, num_classes=7, in_channels=3, image_size=size)
    assert isinstance(m, models.Classifier)
    out = m(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_known_parameter_counts_of_standard_models_on_meta():
    expect = {"resnet-18": 11_173_962, "resnet-50": 23_520_842, "wrn-28-10": 36_479_194,
              "wrn-70-16": 266_796_506, "preact-resnet-18": 11_172_170}
    for name, n in expect.items():
        with torch.device("meta"):
            m = create(name)
        assert count_params(m) == n, name


def test_resnet_block_layouts():
    from robustlab.models.resnet import stage_blocks

    assert stage_blocks(18) == ("basic", (2, 2, 2, 2))
    assert stage_blocks(34) == ("basic", (3, 4, 6, 3))
    assert stage_blocks(50) == ("bottleneck", (3, 4, 6, 3))
    assert stage_blocks(101) == ("bottleneck", (3, 4, 23, 3))
    assert stage_blocks(152) == ("bottleneck", (3, 8, 36, 3))
    assert stage_blocks(200) == ("bottleneck", (3, 24, 36, 3))
    kind, layout = stage_blocks(638)
    assert kind == "bottleneck" and 2 + 3 * sum(layout) == 638 and layout[2] == 182
    assert stage_blocks(26) == ("basic", (2, 2, 6, 2))


@pytest.mark.parametrize("bad", ["resnet-7", "resnet-8", "resnet-51", "wrn-27-10", "wrn-28-0",
                                 "vgg-16", "resnet18"])
def test_bad_names_raise_user_error_with_valid_forms(bad):
    with pytest.raises(UserError, match="valid forms"):
        create(bad)


def test_bad_options_raise_user_error():
    with pytest.raises(UserError, match="norm"):
        create("resnet-18", norm="ln", width=4)
    with pytest.raises(UserError, match="dropout"):
        create("resnet-18", width=4, dropout=0.3)
    with pytest.raises(UserError, match="mean"):
        create("resnet-18", width=4, mean=[0.5], std=[0.5, 0.5, 0.5])
    with pytest.raises(UserError, match="16x16"):
        create("cnn-small", image_size=12)


def test_normalize_inside_model():
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.2]
    m = tiny("resnet-10", mean=mean, std=std).eval()
    x = torch.rand(2, 3, 8, 8)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(m.normalize(x), z)
    assert torch.allclose(m(x), m.net(z), atol=1e-6)
    assert "normalize.mean" in m.state_dict()


def test_norm_variants_build_the_right_layers():
    def kinds(m):
        return {type(x) for x in m.modules()}

    assert nn.BatchNorm2d in kinds(tiny("wrn-10-1", norm="bn"))
    assert MixBatchNorm2d in kinds(tiny("wrn-10-1", norm="mixbn"))
    gn = tiny("wrn-10-1", norm="gn", width=12)
    groups = {x.num_groups: x.num_channels for x in gn.modules() if isinstance(x, nn.GroupNorm)}
    assert groups == {4: 12, 8: 24, 16: 48}  # largest of 32,16,...,1 that divides the channels
    none = tiny("wrn-10-1", norm="none")
    assert not kinds(none) & {nn.BatchNorm2d, nn.GroupNorm, MixBatchNorm2d}
    assert all(c.bias is not None for c in none.modules() if isinstance(c, nn.Conv2d))
    assert models.make_norm("gn", 32).num_groups == 32
    assert models.make_norm("gn", 6).num_groups == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.distributed's own imports
def test_is_mixbn_sees_through_compile_and_ddp(tmp_path):
    """Training wraps the model in torch.compile and, under torchrun, DDP; neither wrapper has
    the model's config, and missing mixture BN there silently routed every row through the
    clean statistics."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from robustlab.models.norm import is_mixbn

    mix, plain = tiny("resnet-10", norm="mixbn"), tiny("resnet-10")
    assert is_mixbn(mix) and not is_mixbn(plain)
    assert is_mixbn(torch.compile(mix)) and not is_mixbn(torch.compile(plain))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        assert is_mixbn(DistributedDataParallel(mix))
        assert is_mixbn(torch.compile(DistributedDataParallel(mix)))
        assert not is_mixbn(DistributedDataParallel(plain))
    finally:
        dist.destroy_process_group()


def test_mixbn_routes_keep_separate_statistics_and_parameters():
    torch.manual_seed(0)
    m = tiny("resnet-10", norm="mixbn").train()
    first = next(x for x in m.modules() if isinstance(x, MixBatchNorm2d))
    clean0, adv0 = first.clean.running_mean.clone(), first.adv.running_mean.clone()
    m(torch.rand(8, 3, 8, 8))  # default route is clean
    assert not torch.equal(first.clean.running_mean, clean0)
    assert torch.equal(first.adv.running_mean, adv0)
    clean1 = first.clean.running_mean.clone()
    m(torch.rand(8, 3, 8, 8) * 0.5, bn="adv")
    assert torch.equal(first.clean.running_mean, clean1)
    assert not torch.equal(first.adv.running_mean, adv0)
    assert first.route == "clean"  # the per-call route is not left behind
    assert first.adv.num_batches_tracked.item() == 1 and first.clean.num_batches_tracked == 1

    m.eval()
    x = torch.rand(4, 3, 8, 8)
    assert not torch.allclose(m(x, bn="clean"), m(x, bn="adv"))
    with bn_route(m, "adv"):
        assert first.route == "adv"
        via_ctx = m(x)
    assert torch.equal(via_ctx, m(x, bn="adv"))
    assert first.route == "clean"
    models.set_bn_route(m, "adv")
    assert torch.equal(m(x), via_ctx)
    keys = m.state_dict().keys()
    assert any(k.endswith("clean.running_var") for k in keys)
    assert any(k.endswith("adv.weight") for k in keys)
    # both affine sets are trainable parameters
    assert count_params(m) > count_params(tiny("resnet-10", norm="bn"))
    with pytest.raises(UserError, match="route"):
        m(x, bn="natural")


def test_bn_route_is_a_noop_for_plain_bn():
    m = tiny("resnet-10", norm="bn").eval()
    x = torch.rand(2, 3, 8, 8)
    with bn_route(m, "adv"):
        a = m(x)
    assert torch.equal(a, m(x, bn="clean"))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_s2 = nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = self.bn(self.conv_s2(x))
        return self.fc(x.flatten(1))


def test_flops_match_hand_count():
    # conv 3->8, 3x3 on 8x8 output: 8*8*8 outputs * 3*3*3 MACs = 13,824 MACs
    # grouped conv 8->4 (2 groups), stride 2 -> 4x4 output: 4*4*4 outputs * (8/2)*3*3 = 2,304 MACs
    # linear 64->5: 320 MACs. Norm, ReLU, biases not counted. FLOPs = 2 x MACs.
    net = TinyNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    assert count_flops(net, (3, 8, 8)) == 2 * (13_824 + 2_304 + 320)
    assert net.training  # mode restored, statistics untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert count_params(net) == (3 * 9 * 8 + 8) + (4 * 9 * 4 + 4) + 8 + (64 * 5 + 5)


def test_flops_of_standard_models():
    m = create("cnn-small", 10, 1, "none", image_size=28)
    # MACs: 26*26*32*9 + 24*24*32*288 + 10*10*64*288 + 8*8*64*576 + 1024*200 + 200*200 + 200*10
    macs = 194_688 + 5_308_416 + 1_843_200 + 2_359_296 + 204_800 + 40_000 + 2_000
    assert count_flops(m, (1, 28, 28)) == 2 * macs
    with torch.device("meta"):
        r18 = create("resnet-18")
    assert count_flops(r18, (3, 32, 32)) == 1_110_845_440  # 0.556 GMACs, the usual CIFAR figure


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    m = tiny("wrn-10-2", norm="mixbn", num_classes=3, mean=[0.4] * 3, std=[0.2] * 3,
             dropout=0.1)
    m.train()
    m(torch.rand(4, 3, 8, 8), bn="adv")  # non-trivial statistics
    m.eval()
    path = models.save_model(m, tmp_path / "run" / "model.safetensors")
    assert path.is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))
    back = robustlab.load_model(tmp_path / "run")
    assert not back.training
    assert back.config == m.config
    x = torch.rand(3, 3, 8, 8)
    for route in ("clean", "adv"):
        assert torch.equal(back(x, bn=route), m(x, bn=route))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["robustlab_config"])["name"] == "wrn-10-2"
    models.save_model(m, tmp_path / "run" / "model_ema.safetensors")
    assert torch.equal(models.load_model(tmp_path / "run", which="ema")(x), m(x))
    # The same weights give the same bytes, save after save (a file's hash identifies them).
    first = path.read_bytes()
    for i in range(6):
        assert models.save_model(m, tmp_path / f"again{i}.safetensors").read_bytes() == first


def test_load_model_errors_name_the_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        models.load_model(tmp_path / "nope.safetensors")
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="model.safetensors"):
        models.load_model(tmp_path)
    with pytest.raises(UserError, match="best.safetensors"):
        models.load_model(tmp_path, which="best")
    with pytest.raises(UserError, match="unknown weights"):
        models.load_model(tmp_path, which="final")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(UserError, match="robustlab model config"):
        models.load_model(tmp_path / "foreign.safetensors")
    # weights that do not fit the architecture the config names
    m = tiny("resnet-10")
    models.save_model(m, tmp_path / "m.safetensors")
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "m.safetensors"))
    state.pop("fc.weight", None)
    state.pop("net.fc.weight")
    meta = {"robustlab_config": json.dumps(m.config)}
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="bad.safetensors"):
        models.load_model(tmp_path / "bad.safetensors")


def test_cli_models_list_and_info(capsys):
    assert cli_main(["models", "list", "--names", "cnn-small", "wrn-70-16"]) == 0
    out = capsys.readouterr().out
    assert "266.80M" in out and "312.39K" in out and "wrn-D-W" in out
    assert cli_main(["models", "info", "resnet-638"]) == 0
    assert "(3, 24, 182, 3)" in capsys.readouterr().out
    assert cli_main(["models", "info", "resnet-7"]) == 2
    assert cli_main(["models", "list", "--input-size", "3,32"]) == 2


def test_cnn_small_hidden_scales_the_fully_connected_layers():
    def count(**kw):
        m = create("cnn-small", num_classes=10, in_channels=1, norm="none", image_size=28, **kw)
        return sum(p.numel() for p in m.parameters())

    assert count() == count(hidden=200) == 312_202
    # width 4 / hidden 25: convs 1068 parameters, fc 128*25+25 + 25*25+25 + 25*10+10
    assert count(width=4, hidden=25) == 1068 + 3225 + 650 + 260
    with pytest.raises(UserError, match="unknown option.*hidden"):
        create("resnet-18", num_classes=10, in_channels=1, norm="bn", image_size=28, hidden=8)
