"""robustlab: adversarial training, trustworthy robustness evaluation and analysis in PyTorch."""

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """A ready model in eval mode from a checkpoint file or run folder; see
    :func:`robustlab.models.load_model`. Imported lazily so ``import robustlab`` stays light."""
    from .models import load_model as _load_model

    return _load_model(*args, **kwargs)


def evaluate(model, x, y, threat=None, attacks=None, **kwargs):
    """Robust accuracy of any ``nn.Module`` taking [0, 1] images, AutoAttack-style, in one line:
    ``robustlab.evaluate(model, x, y, eps=8/255, norm="linf", version="standard")``; the older
    ``evaluate(model, x, y, threat, attacks)`` also works. Arguments are checked (a
    ``ValueError`` naming the bad one), the model is sanity-checked and the gradient-masking
    checks run unless ``masking=False``; see :func:`robustlab.evaluation.api.evaluate`."""
    from .evaluation.api import evaluate as _evaluate

    return _evaluate(model, x, y, threat, attacks, **kwargs)
