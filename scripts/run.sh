#!/usr/bin/env bash
# Set up and start the rrm-ui web app (the same as `python3 app.py`): SQLite db/rrm_ui.db,
# http://127.0.0.1:7860, RRM-7B by default. Arguments go to `rrm-ui serve` (see --help), e.g.
#   scripts/run.sh --model ./tiny-model          a wiring demo (rrm-ui dev tiny-model ./tiny-model)
#   scripts/run.sh --endpoint http://host:8000/v1 a running vLLM OpenAI server
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python app.py "$@"
