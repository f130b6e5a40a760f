"""What a dataset is, as data: its shape, normalisation, class names and the files it comes in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset as it is published.

    ``sha256`` holds every digest accepted for the file: the official download and, where a
    distribution repackages it byte-for-byte in content but not in container (Debian re-gzips
    Fashion-MNIST without the file name in the gzip header), that copy too. An empty tuple
    means the file cannot be checked. ``urls`` are tried in turn (primary first, then mirrors).
    ``extracted`` names a folder that may stand in for an archive once unpacked.
    ``optional`` files (SVHN's 1.3 GB extra set) are fetched only when asked for.
    """

    filename: str
    urls: tuple[str, ...]
    sha256: tuple[str, ...] = ()
    size: int | None = None
    splits: tuple[str, ...] = ("train", "test")
    extracted: str | None = None
    optional: bool = False


@dataclass
class DatasetSpec:
    """A dataset by name. Images are square, ``image_size`` pixels a side, ``in_channels`` deep.

    ``mean``/``std`` are per-channel statistics of the training images on the [0, 1] scale; models
    normalise inside themselves with them, so every attack works on [0, 1] pixels.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    format: str = "idx"                      # idx | cifar | svhn | npz
    files: tuple[FileSpec, ...] = ()
    system_dirs: tuple[str, ...] = ()        # read-only places a distribution installs files to
    splits: tuple[str, ...] = ("train", "test")
    description: str = ""
    homepage: str = ""
    extra: dict = field(default_factory=dict)  # format-specific details (e.g. label key)

    def files_for(self, split: str) -> list[FileSpec]:
        return [f for f in self.files if split in f.splits]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)
