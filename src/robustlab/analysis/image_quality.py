"""Image-quality metrics on feature arrays: Fréchet distance (FID, Heusel et al., NeurIPS 2017),
kernel distance (KID, Bińkowski et al., ICLR 2018) and the Inception-style score (IS, Salimans
et al., NeurIPS 2016).

Every function takes features (N×D float arrays) or class probabilities (N×K), never images:
which network produced them is the caller's business (``analysis/feature_net.py``), and a
result must name it, e.g. ``FID[cnn-small fashion-mnist]``. Defaults follow the reference
implementations: KID's cubic polynomial kernel k(a, b) = (a·b / D + 1)^3 averaged over 100
subsets of 1000 (``min(1000, n)``) examples, as in Bińkowski et al.'s code and torch-fidelity;
IS over 10 splits, as in Salimans et al.'s code.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def _as_features(f, name: str) -> np.ndarray:
    a = np.asarray(f, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise UserError(f"{name}: expected an N×D feature array with N >= 2, got shape "
                        f"{a.shape}")
    if not np.isfinite(a).all():
        raise UserError(f"{name}: features contain NaN or infinity")
    return a


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of N×D features."""
    f = _as_features(features, "features")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½): the squared 2-Wasserstein distance between two
    Gaussians. Tr((Σ1 Σ2)^½) is computed as Tr((Σ1^½ Σ2 Σ1^½)^½), a symmetric positive
    semi-definite matrix, with symmetric eigendecompositions: unlike a general matrix square
    root it stays real and exact when the covariances are singular (dead ReLU features, fewer
    samples than dimensions), so no ε has to be added to the diagonals."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise UserError(f"frechet_distance: shapes do not match ({mu1.shape}, {s1.shape}) vs "
                        f"({mu2.shape}, {s2.shape})")
    diff = mu1 - mu2
    r1 = _sqrt_psd(s1)
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = float(np.sqrt(np.clip(inner, 0, None)).sum())
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def fid_from_features(real, fake) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets."""
    m1, s1 = gaussian_stats(real)
    m2, s2 = gaussian_stats(fake)
    return frechet_distance(m1, s1, m2, s2)


def _poly_mmd2_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    kxx = (a @ a.T / d + 1) ** 3
    kyy = (b @ b.T / d + 1) ** 3
    kxy = (a @ b.T / d + 1) ** 3
    m, n = len(a), len(b)
    # Unbiased: the diagonals (k(x, x)) are left out of the within-set terms.
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid_from_features(real, fake, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Unbiased squared MMD with the cubic polynomial kernel, averaged over ``subsets`` random
    subsets of ``subset_size`` examples from each set (capped at the smaller set): (mean, std).
    Near 0 for two samples of one distribution; it can be slightly negative."""
    a, b = _as_features(real, "real features"), _as_features(fake, "fake features")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"kid: feature sizes differ ({a.shape[1]} vs {b.shape[1]})")
    if subsets < 1:
        raise UserError(f"kid: subsets must be >= 1, got {subsets}")
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    vals = [_poly_mmd2_unbiased(a[rng.choice(len(a), size, replace=False)],
                                b[rng.choice(len(b), size, replace=False)])
            for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


def inception_score(probs, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) per split of the N×K class probabilities: (mean, std) over
    splits. 1 for uninformative predictions, K at most. The rows are shuffled (a fixed ``seed``)
    before splitting: Salimans et al.'s splits assume shuffled samples, and class-conditional
    samples come class by class, so contiguous splits would each hold one class, p(y) would
    equal p(y|x) and the score would be about 1 for any sampler."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < 1:
        raise UserError(f"inception_score: expected N×K probabilities, got shape {p.shape}")
    if splits < 1:
        raise UserError(f"inception_score: splits must be >= 1, got {splits}")
    splits = min(splits, len(p))
    p = p[np.random.default_rng(seed).permutation(len(p))]
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(py + 1e-12))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))
