"""Spatial robustness (Engstrom, Tran, Tsipras, Schmidt and Madry, "Exploring the Landscape of
Spatial Robustness", ICML 2019): rotation and translation threat models, the exhaustive grid
attack, random worst-of-k, first-order spatial and spatial + ℓ∞ attacks, and majority-vote
inference over random transforms.

    threat = SpatialThreat(max_angle=30, max_trans=3)
    res = GridAttack(threat)(model, x, y)       # res.extras["transform"]: (N, 3) angle, tx, ty
    x_again = threat.apply(x, res.extras["transform"])
"""

from .attacks import FirstOrderSpatial, GridAttack, GridLinf, RandomSpatial
from .threat import SpatialThreat, default_for_size
from .transform import BORDERS, affine, affine_many, apply_params, canvas_padding
from .vote import MajorityVote

__all__ = [
    "BORDERS", "FirstOrderSpatial", "GridAttack", "GridLinf", "MajorityVote", "RandomSpatial",
    "SpatialThreat", "affine", "affine_many", "apply_params", "canvas_padding",
    "default_for_size",
]
