"""robustlab: adversarial training, trustworthy robustness evaluation and analysis in PyTorch."""

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """A ready model in eval mode from a checkpoint file or run folder; see
    :func:`robustlab.models.load_model`. Imported lazily so ``import robustlab`` stays light."""
    from .models import load_model as _load_model

    return _load_model(*args, **kwargs)
