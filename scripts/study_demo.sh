#!/usr/bin/env bash
# The human study demonstrated end to end (issue 17): AutoAttack on the quickstart model, a study
# of the images that fooled it, K simulated annotators, and a screenshot of the labelling page.
#   bash scripts/study_demo.sh [QUICKSTART_RUN] [N_EVAL] [VERSION] [K]
# Defaults: the newest runs/quickstart-*, 200 test images, --version standard, K = 20.
# Cost on 2 CPU cores: the standard suite on 200 Fashion-MNIST images of cnn-small takes a few
# minutes (use VERSION=fast for about a third); the rest takes seconds.
# Needs: pip install -e '.[study,browser]' and Debian's chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN=${1:-$(ls -d runs/quickstart-* | tail -1)}
N=${2:-200}
VERSION=${3:-standard}
K=${4:-20}

$PY -m robustlab eval "$RUN" --n "$N" --version "$VERSION" --eps 0.1 --save-adv --name study-eval
EVAL=$(ls -d runs/study-eval-* | tail -1)
$PY -m robustlab study create "$EVAL" --n 100
STUDY=$(ls -d runs/study-2* | tail -1)
$PY -m robustlab study results "$STUDY" --simulate "$K" | tee "$STUDY/results.txt"

# Screenshot of the labelling page: serve the study on a free port, open it in Chromium.
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PY -m robustlab study serve "$STUDY" --port "$PORT" >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
mkdir -p docs/img
$PY - "$PORT" <<'PY'
import sys, time, urllib.request
from playwright.sync_api import sync_playwright

base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
    page = b.new_page(viewport={"width": 900, "height": 640})
    page.goto(base + "/")
    page.check("#consent")
    page.click("#start")
    page.wait_for_selector("#stimulus")
    # The shot must show the image, not its alt text: wait until it has decoded.
    page.wait_for_function("() => { const i = document.getElementById('stimulus');"
                           " return i.complete && i.naturalWidth > 0; }")
    page.screenshot(path="docs/img/study_labelling.png")
    b.close()
print("docs/img/study_labelling.png")
PY
echo "study: $STUDY (report: $STUDY/report.html)"
