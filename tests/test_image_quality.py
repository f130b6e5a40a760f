"""FID, KID and IS: exact values where a closed form exists, and the orderings a metric must
respect on real features of a tiny trained network."""

import numpy as np
import pytest
import torch
from helpers import make_blocks_npz

from robustlab import data
from robustlab.analysis.feature_net import FeatureNet, train_feature_net
from robustlab.analysis.image_quality import (
    fid_from_features,
    frechet_distance,
    inception_score,
    kid_from_features,
)
from robustlab.errors import UserError


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iq")
    train = data.load("npz", "train", path=make_blocks_npz(tmp / "tr.npz", 384, seed=0))
    test = data.load("npz", "test", path=make_blocks_npz(tmp / "te.npz", 400, seed=1))
    model = train_feature_net(train.images, train.labels, train.spec, epochs=3, seed=0,
                              batch_size=32)
    net = FeatureNet(model, "cnn-small blocks", "0" * 64, tuple(train.images.shape[1:]))
    return net, test.float_images()


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(0).normal(size=(300, 12))
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    # Diagonal covariances: ‖μ1 − μ2‖² + Σ (√a − √b)².
    a, b = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    closed = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(closed, rel=1e-9)
    # Full covariances: Tr((Σ1Σ2)^½) is the sum of the square roots of Σ1Σ2's eigenvalues.
    s1, s2 = _spd(rng, d), _spd(rng, d)
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    closed = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(closed, rel=1e-8)
    # Features drawn from the two Gaussians estimate it.
    x = rng.multivariate_normal(m1, s1, size=20000)
    y = rng.multivariate_normal(m2, s2, size=20000)
    assert fid_from_features(x, y) == pytest.approx(closed, rel=0.05)


def test_kid_is_near_zero_for_one_distribution_and_not_for_two():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    z = rng.normal(0.5, 1.0, size=(600, 16))
    same, _ = kid_from_features(x, y, subsets=20, subset_size=300)
    diff, _ = kid_from_features(x, z, subsets=20, subset_size=300)
    assert abs(same) < 0.01 < diff
    assert diff > 20 * abs(same)


def test_fid_grows_with_noise_and_is_beats_noise_on_real_features(blocks):
    net, x = blocks
    real_f, real_p = net.features_and_probs(x[:200])
    g = torch.Generator().manual_seed(0)
    fids = []
    for sigma in (0.0, 0.05, 0.1, 0.2, 0.4):
        noisy = (x[200:] + sigma * torch.randn(x[200:].shape, generator=g)).clamp(0, 1)
        fids.append(fid_from_features(real_f, net.features_and_probs(noisy)[0]))
    assert fids == sorted(fids) and fids[-1] > 3 * fids[0]
    same = fid_from_features(real_f, net.features_and_probs(x[:200])[0])
    assert same == pytest.approx(0.0, abs=1e-6)
    is_real, _ = inception_score(real_p, splits=2)
    is_noise, _ = inception_score(net.features_and_probs(torch.rand(200, *x.shape[1:],
                                                                    generator=g))[1], splits=2)
    assert is_real > 2.5 > is_noise  # 4 classes: IS is at most 4


def test_bad_feature_arrays_and_shapes_are_user_errors(blocks):
    net, x = blocks
    with pytest.raises(UserError, match="N×D"):
        fid_from_features(np.zeros(5), np.zeros(5))
    with pytest.raises(UserError, match="feature sizes differ"):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(UserError, match="feature network"):
        net.features_and_probs(torch.zeros(2, 3, 32, 32))


class _UserNet(torch.nn.Module):
    """A user's network returning (features, logits)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16),
                                        torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = self.body(x)
        return h, self.head(h)


def test_a_torchscript_feature_network_is_accepted(blocks, tmp_path):
    from robustlab.analysis.feature_net import load_feature_net

    net, x = blocks
    assert net.features_and_probs(x[:3])[0].shape == (3, 200)  # cnn-small's penultimate layer
    torch.jit.script(_UserNet()).save(str(tmp_path / "user.pt"))
    user = load_feature_net(tmp_path / "user.pt", (1, 28, 28))
    f, p = user.features_and_probs(x[:5])
    assert f.shape == (5, 16) and p.shape == (5, 4) and user.label("FID") == "FID[user]"
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a TorchScript file"):
        load_feature_net(tmp_path / "junk.pt", (1, 28, 28))
    with pytest.raises(UserError, match="does not take images"):
        load_feature_net(tmp_path / "user.pt", (3, 32, 32))


def test_inception_weights_file_gives_the_fid_inception(tmp_path):
    from robustlab.analysis.feature_net import load_feature_net
    from robustlab.analysis.inception import FIDInceptionV3

    net = FIDInceptionV3(num_classes=1000)
    # torchvision's InceptionV3 without its auxiliary head has exactly this many parameters.
    assert sum(p.numel() for p in net.parameters()) == 23_834_568
    torch.manual_seed(0)
    state = FIDInceptionV3().state_dict()
    torch.save({k: v for k, v in state.items() if "num_batches" not in k}, tmp_path / "i.pth")
    fnet = load_feature_net(tmp_path / "i.pth", (1, 28, 28))
    f, p = fnet.features_and_probs(torch.rand(2, 1, 28, 28))
    assert fnet.name == "inception-v3" and f.shape == (2, 2048) and p.shape == (2, 1008)
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="do not match the FID architecture"):
        load_feature_net(tmp_path / "bad.pth", (1, 28, 28))


def test_inception_score_of_class_sorted_samples_is_not_one():
    """Class-conditional samples come class by class; confident, balanced predictions score
    about K whatever their order (contiguous splits of sorted rows would give about 1)."""
    k, per = 10, 100
    probs = np.full((k * per, k), 0.001)
    probs[np.arange(k * per), np.repeat(np.arange(k), per)] = 1 - 0.001 * (k - 1)
    score, _ = inception_score(probs, splits=10)
    assert score > 0.8 * k  # each split of 100 random rows is only roughly balanced
    shuffled, _ = inception_score(probs[np.random.default_rng(1).permutation(k * per)])
    assert abs(score - shuffled) < 0.5
