#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine (CPU, offline): installs what it
# needs, then runs pytest (unit, real backends, CLI, the app's handlers, Chromium end to end).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages the tests use: a PostgreSQL server (storage tests run against it and SQLite)
# and Chromium (browser end-to-end tests drive it with the playwright package).
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
RRM_UI_EXTRAS=test scripts/setup.sh
export HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" TOKENIZERS_PARALLELISM=false
.venv/bin/python -m ruff check rrm_ui tests bench
exec .venv/bin/python -m pytest -ra "$@"
