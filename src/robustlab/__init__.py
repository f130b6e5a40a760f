"""robustlab: adversarial training, trustworthy robustness evaluation and analysis in PyTorch."""

__version__ = "0.1.0"
