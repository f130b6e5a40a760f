import os

# No progress bars in tests: they would only slow the suite and clutter its output.
os.environ.setdefault("ROBUSTLAB_QUIET", "1")
