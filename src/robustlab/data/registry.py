"""The datasets robustlab knows by name, with their official addresses and SHA-256 digests.

Where each digest comes from is noted next to it; every one was found in at least two
independent public sources (tensorflow-datasets' ``url_checksums`` files, torchvision's dataset
prototypes, Keras' loaders) except where the comment says otherwise.
"""

from __future__ import annotations

import dataclasses

from ..errors import UserError
from .spec import DatasetSpec, FileSpec

# --------------------------------------------------------------------------- Fashion-MNIST
# Xiao, Rasul and Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
# Learning Algorithms", 2017.
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _fashion(filename: str, official: str, debian: str, size: int, split: str) -> FileSpec:
    # `official`: the S3 download (tensorflow-datasets url_checksums/fashion_mnist.txt, and
    # torchvision's prototype FashionMNIST). `debian`: Debian's dataset-fashion-mnist, which
    # re-gzips the same IDX bytes without the file name in the gzip header (24 bytes shorter);
    # computed from /usr/share/datasets/fashion-mnist on the project machines.
    return FileSpec(filename, (_FASHION_URL + filename,), (official, debian), size, (split,))


FASHION_MNIST = DatasetSpec(
    name="fashion-mnist", num_classes=10, in_channels=1, image_size=28,
    mean=(0.2860,), std=(0.3530,),
    classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"],
    format="idx",
    files=(
        _fashion("train-images-idx3-ubyte.gz",
                 "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                 "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                 26421880, "train"),
        _fashion("train-labels-idx1-ubyte.gz",
                 "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                 "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                 29515, "train"),
        _fashion("t10k-images-idx3-ubyte.gz",
                 "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                 "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                 4422102, "test"),
        _fashion("t10k-labels-idx1-ubyte.gz",
                 "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                 "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                 5148, "test"),
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    description="Zalando article images, 28x28 grey, 60k train / 10k test",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
)

# --------------------------------------------------------------------------- MNIST
# LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
# recognition", 1998. yann.lecun.com is often down, so PyTorch's S3 copy comes first.
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://yann.lecun.com/exdb/mnist/")


def _mnist(filename: str, sha256: str, size: int, split: str) -> FileSpec:
    # Digests: tensorflow-datasets url_checksums/mnist.txt (Google's cvdf copy, same bytes and
    # sizes as LeCun's), and the same values pinned in several public loaders that fetch from
    # ossci-datasets and yann.lecun.com.
    return FileSpec(filename, tuple(m + filename for m in _MNIST_MIRRORS), (sha256,), size,
                    (split,))


MNIST = DatasetSpec(
    name="mnist", num_classes=10, in_channels=1, image_size=28,
    mean=(0.1307,), std=(0.3081,),
    classes=[str(d) for d in range(10)],
    format="idx",
    files=(
        _mnist("train-images-idx3-ubyte.gz",
               "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422,
               "train"),
        _mnist("train-labels-idx1-ubyte.gz",
               "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881,
               "train"),
        _mnist("t10k-images-idx3-ubyte.gz",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877,
               "test"),
        _mnist("t10k-labels-idx1-ubyte.gz",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542,
               "test"),
    ),
    description="handwritten digits, 28x28 grey, 60k train / 10k test",
    homepage="http://yann.lecun.com/exdb/mnist/",
)

# --------------------------------------------------------------------------- CIFAR
# Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009. The python
# version: pickled dicts, read here with a restricted unpickler (see cifar.py).
CIFAR10 = DatasetSpec(
    name="cifar10", num_classes=10, in_channels=3, image_size=32,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616),
    classes=["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"],
    format="cifar",
    files=(
        # Digest: Keras' cifar10.load_data file_hash and torchvision's prototype Cifar10
        # (md5 c58f30108f718f92721af3b95e74349a, as on the dataset's page).
        FileSpec("cifar-10-python.tar.gz",
                 ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                 ("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",),
                 170498071, ("train", "test"), extracted="cifar-10-batches-py"),
    ),
    extra={"train_members": [f"data_batch_{i}" for i in range(1, 6)],
           "test_members": ["test_batch"], "meta": "batches.meta",
           "label_key": b"labels", "names_key": b"label_names"},
    description="natural images, 32x32 colour, 10 classes, 50k train / 10k test",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
)

CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]

CIFAR100 = DatasetSpec(
    name="cifar100", num_classes=100, in_channels=3, image_size=32,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    classes=list(CIFAR100_CLASSES),
    format="cifar",
    files=(
        # Digest: Keras' cifar100.load_data file_hash and torchvision's prototype Cifar100
        # (md5 eb9058c3a382ffc7106e4002c42a8d85, as on the dataset's page).
        FileSpec("cifar-100-python.tar.gz",
                 ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                 ("85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",),
                 169001437, ("train", "test"), extracted="cifar-100-python"),
    ),
    extra={"train_members": ["train"], "test_members": ["test"], "meta": "meta",
           "label_key": b"fine_labels", "names_key": b"fine_label_names"},
    description="natural images, 32x32 colour, 100 fine classes, 50k train / 10k test",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
)

# --------------------------------------------------------------------------- SVHN
# Netzer et al., "Reading Digits in Natural Images with Unsupervised Feature Learning", 2011.
# Digests: tensorflow-datasets url_checksums/svhn_cropped.txt and torchvision's prototype SVHN.
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN = DatasetSpec(
    name="svhn", num_classes=10, in_channels=3, image_size=32,
    mean=(0.4377, 0.4438, 0.4728), std=(0.198, 0.201, 0.197),
    classes=[str(d) for d in range(10)],
    format="svhn",
    files=(
        FileSpec("train_32x32.mat", (_SVHN_URL + "train_32x32.mat",),
                 ("435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",),
                 182040794, ("train",)),
        FileSpec("test_32x32.mat", (_SVHN_URL + "test_32x32.mat",),
                 ("cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",),
                 64275384, ("test",)),
        FileSpec("extra_32x32.mat", (_SVHN_URL + "extra_32x32.mat",),
                 ("a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3",),
                 1329278602, ("extra",), optional=True),
    ),
    splits=("train", "test", "extra"),
    description="house-number digits, 32x32 colour, 73k train / 26k test / 531k extra",
    homepage="http://ufldl.stanford.edu/housenumbers/",
)

# --------------------------------------------------------------------------- npz
# Extra (e.g. generated) training images: shape and statistics come from the file itself.
NPZ = DatasetSpec(
    name="npz", num_classes=0, in_channels=0, image_size=0, mean=(0.5,), std=(0.5,),
    classes=[], format="npz",
    description="arrays `image` (uint8 NHWC) and `label` from a file given with path=",
)

_SPECS = {s.name: s for s in (FASHION_MNIST, MNIST, CIFAR10, CIFAR100, SVHN, NPZ)}


def list_datasets() -> list[str]:
    return list(_SPECS)


def get_spec(name: str) -> DatasetSpec:
    """A copy of the named dataset's spec (callers may change theirs freely)."""
    spec = _SPECS.get(name)
    if spec is None:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(_SPECS)}")
    return dataclasses.replace(spec, classes=list(spec.classes), extra=dict(spec.extra))
