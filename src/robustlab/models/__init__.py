"""Models: a registry of architectures by name, mixture batch norm, parameter and FLOP counts,
and self-describing safetensors checkpoints. Every model takes images in [0, 1].

    model = create("wrn-28-10", num_classes=10, norm="mixbn", mean=..., std=...)
    logits = model(x, bn="adv")
"""

from .checkpoint import load_model, read_config, save_model, weights_file
from .classifier import Classifier, Normalize
from .flops import count_flops, count_params
from .norm import NORMS, MixBatchNorm2d, bn_route, make_norm, set_bn_route
from .registry import FAMILIES, REPRESENTATIVE, Family, create, resolve, valid_forms

create_model = create

__all__ = [
    "FAMILIES", "NORMS", "REPRESENTATIVE", "Classifier", "Family", "MixBatchNorm2d", "Normalize",
    "bn_route", "count_flops", "count_params", "create", "create_model", "load_model",
    "make_norm", "read_config", "resolve", "save_model", "set_bn_route", "valid_forms",
    "weights_file",
]
