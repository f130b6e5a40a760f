"""What the bench scripts share about the original AutoAttack (``pyautoattack`` 0.2.0, a
bench-only extra installed by ``make bench-deps``): its names for the norms.

The scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they import
this module by its plain name.
"""

ORIGINAL_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}
