"""robustlab: adversarial training, trustworthy robustness evaluation and analysis in PyTorch."""

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """A ready model in eval mode from a checkpoint file or run folder; see
    :func:`robustlab.models.load_model`. Imported lazily so ``import robustlab`` stays light."""
    from .models import load_model as _load_model

    return _load_model(*args, **kwargs)


def evaluate(model, x, y, threat, attacks, **kwargs):
    """Robust accuracy of any ``nn.Module`` taking [0, 1] images: ``attacks`` run in turn on the
    points still robust; see :func:`robustlab.evaluation.evaluate`."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(model, x, y, threat, attacks, **kwargs)
