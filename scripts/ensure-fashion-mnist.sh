#!/usr/bin/env bash
# Make sure Fashion-MNIST is on disk. On Debian the package dataset-fashion-mnist ships the
# official IDX files; install it when missing and we are allowed to (root, or sudo without a
# password). Anywhere else robustlab downloads the official files and checks their SHA-256.
set -uo pipefail
PY=${1:-python3}
if "$PY" -m robustlab data check fashion-mnist --quiet 2>/dev/null; then
    exit 0
fi
if [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
    if [ "$SUDO" != none ]; then
        echo "Installing Debian's dataset-fashion-mnist ..."
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } \
            || echo "apt-get could not install dataset-fashion-mnist; downloading instead."
    fi
fi
exec "$PY" -m robustlab data fetch fashion-mnist
