# Sourced by the scripts here, from the repository root: PYTHON is the Python that has robustlab
# installed, the project's .venv when there is one, unless the caller set PYTHON.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
