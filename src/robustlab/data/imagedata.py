"""A labelled image set held in memory as uint8 (4x smaller than float) and converted per batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spec import DatasetSpec


@dataclass
class ImageData:
    """``images``: uint8 N×C×H×W; ``labels``: int64 N; ``spec``: what the dataset is.

    Move it to the training device once (``data.to("cuda")``) and index batches there, as
    airbench does: no data-loader processes, no host-to-device copy per step.
    """

    images: torch.Tensor
    labels: torch.Tensor
    spec: DatasetSpec

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(f"labels must be one per image, got {tuple(self.labels.shape)} "
                             f"for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def subset(self, index: torch.Tensor) -> ImageData:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageData(self.images[index.to(self.images.device)],
                         self.labels[index.to(self.labels.device)], self.spec)

    def to(self, device: torch.device | str) -> ImageData:
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return ImageData(self.images.to(device), self.labels.to(device), self.spec)

    def float_images(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """float32 in [0, 1]; of the examples ``index`` only, when given."""
        x = self.images if index is None else self.images[index.to(self.images.device)]
        return x.to(torch.float32).div_(255)

    def class_counts(self) -> list[int]:
        n = max(self.spec.num_classes, int(self.labels.max()) + 1 if len(self) else 0)
        return torch.bincount(self.labels.cpu(), minlength=n).tolist()
