"""Starting points for class-conditional sampling, fitted on the training set.

- ``pca``: per class, the principal components keeping 95% of the pixel variance (Mirza et al.,
  ECCV 2024, ``retained_variance=0.95`` in their generation code); a seed is the class mean plus
  a Gaussian combination of those components with their own variances. (The authors' code
  draws the coefficients with standard deviation 0.005 × the singular values, about 0.35 × the
  class's spread for 5000 images a class; here the seeds have the class's full spread.)
- ``gaussian``: per class, a full-covariance Gaussian of the pixels (the class-conditional seeds
  of Santurkar et al., NeurIPS 2019, and the authors' "informative" start), with 1e-4 added to
  the diagonal as in the authors' code so that the covariance is positive definite.

Seeds are clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError

SEED_KINDS = ("pca", "gaussian")
JITTER = 1e-4


@dataclass
class ClassSeeds:
    kind: str
    shape: tuple[int, int, int]
    means: list[torch.Tensor]          # per class, D
    factors: list[torch.Tensor]        # per class, D×k: x = mean + factor @ z, z ~ N(0, I_k)
    components: list[int]              # per class: k

    def sample(self, label: int, n: int, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """``n`` seeds of class ``label``, N×C×H×W in [0, 1]."""
        if not 0 <= label < len(self.means):
            raise UserError(f"seeds: no class {label} (fitted on {len(self.means)} classes)")
        f = self.factors[label]
        z = torch.randn(n, f.shape[1], generator=generator, dtype=f.dtype)
        x = self.means[label] + z @ f.T
        return x.view(n, *self.shape).clamp_(0.0, 1.0).float()


def fit_seeds(images: torch.Tensor, labels: torch.Tensor, kind: str, num_classes: int, *,
              variance: float = 0.95) -> ClassSeeds:
    """Fit seeds of ``kind`` on float images N×C×H×W in [0, 1] and their labels."""
    if kind not in SEED_KINDS:
        raise UserError(f"unknown seed initialisation {kind!r}; choose from "
                        f"{', '.join(SEED_KINDS)}")
    if not 0 < variance <= 1:
        raise UserError(f"seeds: variance must be in (0, 1], got {variance}")
    shape = tuple(images.shape[1:])
    flat = images.reshape(len(images), -1).double()
    means, factors, comps = [], [], []
    for c in range(num_classes):
        xc = flat[labels == c]
        if len(xc) < 2:
            raise UserError(f"seeds: class {c} has {len(xc)} training images; need at least 2")
        mu = xc.mean(0)
        centred = xc - mu
        if kind == "pca":
            _, s, vh = torch.linalg.svd(centred, full_matrices=False)
            var = s ** 2 / (len(xc) - 1)
            share = var.cumsum(0) / var.sum().clamp_min(1e-30)
            k = int((share < variance).sum()) + 1
            k = min(k, len(var))
            factor = vh[:k].T * var[:k].sqrt()
        else:
            cov = centred.T @ centred / (len(xc) - 1)
            cov += JITTER * torch.eye(len(cov), dtype=cov.dtype)
            factor = torch.linalg.cholesky(cov)
            k = factor.shape[1]
        means.append(mu)
        factors.append(factor)
        comps.append(k)
    return ClassSeeds(kind, shape, means, factors, comps)
