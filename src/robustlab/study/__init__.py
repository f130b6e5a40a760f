"""The human-labelling study of adversarial images (Bartoldson et al., "Adversarial robustness
limits via scaling-law and human-alignment studies", ICML 2024, section 6): people label the
images that fool a model, in a clean and a perturbed version, so that "invalid" adversarial
examples (the perturbation changed what a person sees) can be counted.

design.py builds a study folder from an evaluation run; storage.py keeps every participant,
assignment and response in SQLite (WAL); server.py serves it with Flask (the optional ``study``
extra); stats.py computes the results; simulate.py answers a study with simulated annotators.
The rest of robustlab never imports this package."""
