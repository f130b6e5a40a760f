"""The independent feature network that FID, KID and IS are computed on.

Inception weights cannot be fetched here, so by default the features come from a standard
(non-robust) ``cnn-small`` trained once on the dataset's training split with a fixed seed and
cached under ``<cache>/feature-nets/`` with the hash of its recipe (dataset fingerprint, epochs,
seed, recipe version) in the file name. It is never the model being evaluated, and every metric
names it: ``FID[cnn-small fashion-mnist]``. The features are the input of the last linear
layer (the 200-unit penultimate layer of cnn-small); IS uses its softmax.

A user network may replace it: a robustlab ``.safetensors`` checkpoint, or a TorchScript file
(``.pt``/``.ts``) taking [0, 1] images and returning a tuple (features, logits), or logits alone
(then the logits are the features: TorchScript modules take no forward hooks). A file holding
the state dict of pytorch-fid's InceptionV3 port (``pt_inception-2015-12-05-*.pth``, or the same
tensors in .safetensors) gives the FID InceptionV3 of ``analysis/inception.py``, named
``inception-v3``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

# Recipe of the default feature network; change RECIPE_VERSION when the recipe changes so the
# cache key changes with it.
RECIPE_VERSION = 1
DEFAULT_EPOCHS = 2
DEFAULT_SEED = 0
BATCH = 128
LR = 0.05  # SGD with Nesterov momentum, decaying linearly to 0: a plain standard recipe
MOMENTUM = 0.9


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$ROBUSTLAB_CACHE``, else ``~/.cache/robustlab``."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("ROBUSTLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "robustlab"


@dataclass
class FeatureNet:
    """A network with a name, its file's hash and the image shape it takes."""

    model: nn.Module
    name: str                      # e.g. "cnn-small fashion-mnist"
    sha256: str                    # of the weights file
    input_shape: tuple[int, int, int]
    path: str = ""

    def label(self, metric: str) -> str:
        return f"{metric}[{self.name}]"

    def check_images(self, x: torch.Tensor, what: str = "images") -> None:
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise UserError(f"{what} have shape {tuple(x.shape[1:])} but the feature network "
                            f"{self.name} takes {tuple(self.input_shape)}")

    @torch.no_grad()
    def features_and_probs(self, x: torch.Tensor, batch_size: int = 500
                           ) -> tuple[np.ndarray, np.ndarray]:
        """(penultimate features N×D, softmax probabilities N×K) of images in [0, 1]."""
        self.check_images(x)
        last = _last_linear(self.model)
        dev = _device_of(self.model)
        feats, probs = [], []
        store = {}
        hook = last.register_forward_hook(lambda m, inp, out: store.__setitem__("f", inp[0])) \
            if last is not None else None
        try:
            self.model.eval()
            for i in range(0, len(x), batch_size):
                out = self.model(x[i:i + batch_size].to(dev).float())
                if isinstance(out, (tuple, list)):  # a user network's (features, logits)
                    f, logits = out
                else:
                    logits = out
                    f = store["f"] if hook else logits
                feats.append(f.flatten(1).float().cpu())
                probs.append(F.softmax(logits.float(), 1).cpu())
        finally:
            if hook is not None:
                hook.remove()
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _last_linear(model: nn.Module) -> nn.Module | None:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recipe_key(dataset: str, images: torch.Tensor, labels: torch.Tensor, epochs: int,
               seed: int) -> str:
    """Hash of everything that determines the default network's weights."""
    h = hashlib.sha256()
    h.update(json.dumps({"arch": "cnn-small", "dataset": dataset, "epochs": epochs,
                         "seed": seed, "version": RECIPE_VERSION, "n": len(labels)},
                        sort_keys=True).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, spec, *, epochs: int,
                      seed: int, device: torch.device | str = "cpu",
                      batch_size: int = BATCH, quiet: bool | None = None) -> nn.Module:
    """A standard cnn-small trained with cross-entropy: SGD (Nesterov momentum 0.9, lr 0.05
    decaying linearly to 0), batch 128 (``batch_size``), no augmentation, weights and data
    order from ``seed``. ``images`` uint8 N×C×H×W."""
    from .. import models
    from ..progress import progress_bar

    g_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = models.create("cnn-small", num_classes=spec.num_classes,
                              in_channels=spec.in_channels, norm="none", mean=spec.mean,
                              std=spec.std, image_size=spec.image_size).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
        n = len(labels)
        steps = epochs * max(1, -(-n // batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
        gen = torch.Generator().manual_seed(seed)
        model.train()
        with progress_bar("feature net", total=steps, unit="step", quiet=quiet) as bar:
            for _ in range(epochs):
                order = torch.randperm(n, generator=gen)
                for lo in range(0, n, batch_size):
                    idx = order[lo:lo + batch_size]
                    x = images[idx].to(device).float().div_(255)
                    loss = F.cross_entropy(model(x), labels[idx].to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.advance(1)
    finally:
        torch.random.set_rng_state(g_state)  # leave the caller's random stream as it was
    return model.eval()


def default_feature_net(dataset: str, *, data_dir: str = "", data_path: str = "",
                        cache_dir: str | os.PathLike | None = None,
                        epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED,
                        device: torch.device | str = "cpu",
                        quiet: bool | None = None) -> FeatureNet:
    """The cached standard cnn-small of ``dataset`` (trained here the first time)."""
    from .. import data, models

    d = data.load(dataset, "train", data_dir=data_dir or None, path=data_path or None)
    key = recipe_key(dataset, d.images, d.labels, epochs, seed)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset)
    path = cache_root(cache_dir) / "feature-nets" / f"cnn-small-{safe}-{key}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        model = train_feature_net(d.images, d.labels, d.spec, epochs=epochs, seed=seed,
                                  device=device, quiet=quiet)
        models.save_model(model, path)
    model = models.load_model(path, device=str(device))
    return FeatureNet(model, f"cnn-small {dataset}", _sha256_file(path),
                      tuple(d.images.shape[1:]), str(path))


def _inception_state(p: Path) -> dict | None:
    """The state dict in ``p`` when it holds InceptionV3 weights, else None."""
    from .inception import MARKER

    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                if MARKER not in f.keys():
                    return None
                return {k: f.get_tensor(k) for k in f.keys()}
        except Exception:  # noqa: BLE001 - not ours to judge here; the loader below says why
            return None
    if p.suffix in (".pth", ".pt"):
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a TorchScript archive, or junk: decided below
            return None
        if isinstance(state, dict) and MARKER in state:
            return state
    return None


def load_feature_net(path: str | os.PathLike, input_shape: tuple[int, int, int],
                     device: torch.device | str = "cpu") -> FeatureNet:
    """A user's feature network: a robustlab .safetensors checkpoint or a TorchScript file
    taking [0, 1] images of ``input_shape`` (C, H, W) and returning (features, logits) or
    logits."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"feature network {p}: no such file")
    inception = _inception_state(p)
    if inception is not None:
        from .inception import inception_from_state

        model = inception_from_state(inception).to(device)
        # Any image size and 1 or 3 channels: the network resizes to 299×299 itself.
        return FeatureNet(model, "inception-v3", _sha256_file(p), tuple(input_shape), str(p))
    if p.suffix == ".safetensors":
        from .. import models

        model = models.load_model(p, device=str(device))
    elif p.suffix in (".pt", ".ts", ".pth", ".torchscript"):
        try:
            model = torch.jit.load(str(p), map_location=str(device))
        except Exception as e:  # noqa: BLE001 - any failure is a bad file for the user
            raise UserError(f"feature network {p}: not a TorchScript file ({type(e).__name__}"
                            f"); export the network with torch.jit.script or torch.jit.trace "
                            "(an InceptionV3 extractor is not built in)") from None
    else:
        raise UserError(f"feature network {p}: expected a robustlab .safetensors checkpoint "
                        "or a TorchScript .pt/.ts file")
    # A run folder's model.safetensors is named by its folder: "FID[model]" would say nothing.
    name = f"{p.parent.name}/{p.stem}" if p.stem in ("model", "best", "model_ema") else p.stem
    net = FeatureNet(model.eval(), name, _sha256_file(p), tuple(input_shape), str(p))
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, device=device))
    except Exception as e:  # noqa: BLE001
        raise UserError(f"feature network {p} does not take images of shape "
                        f"{tuple(input_shape)} ({type(e).__name__}: {str(e)[:120]})") from None
    logits = out[-1] if isinstance(out, (tuple, list)) else out
    if not torch.is_tensor(logits) or logits.ndim != 2:
        raise UserError(f"feature network {p}: expected N×K logits or (features, logits)")
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict) and "in_channels" in cfg:
        net.input_shape = (cfg["in_channels"], cfg.get("image_size", input_shape[1]),
                           cfg.get("image_size", input_shape[2]))
    return net
