# syntax=docker/dockerfile:1
# rrm-ui: the web app, installed by scripts/setup.sh exactly as `python3 app.py` installs it. Two
# flavours (build argument FLAVOUR), see docs/deploy.md:
#   cuda (default): with the official CUDA vLLM, pinned to the version of the vLLM servers in
#                   docker-compose.yml; judges in-process on the GPU, or through --endpoint.
#   client:         the openai backend only, no torch and no vLLM (the app processes of
#                   docker-compose.yml, which judge through vLLM servers).
#
#   docker build -t rrm-ui .                                  # --build-arg MODEL=... / EXTRAS=hf
#   docker build -t rrm-ui:client --build-arg FLAVOUR=client .
#   docker run --gpus all --shm-size 8g -p 7860:7860 -v rrm-ui-data:/data rrm-ui
#   docker run -p 7860:7860 -v rrm-ui-data:/data rrm-ui:client --endpoint http://gpu-host:8000/v1
#
# Options after the image name are those of `rrm-ui serve --help`. The database, the Hugging Face
# cache (model weights) and anything else kept lives on the volume /data.

# The full (non-slim) image: Triton compiles small C helpers with gcc when vLLM starts.
FROM python:3.12.12-bookworm

# The model the app loads when it gets no --model and no --endpoint (a hub id or a path in the image).
ARG MODEL=Reward-Reasoning/RRM-7B
# More extras of pyproject.toml, comma-separated (e.g. "hf" for the transformers backend).
ARG EXTRAS=""
# cuda (in-process vLLM on a GPU) or client (the openai backend only); scripts/setup.sh's flavours.
ARG FLAVOUR=cuda

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app

# What scripts/setup.sh needs, first, so that a code change does not reinstall vLLM. The install
# is editable (as on a developer's machine): the code copied below is what runs.
COPY pyproject.toml README.md ./
COPY scripts/setup.sh scripts/setup.sh
COPY rrm_ui/__init__.py rrm_ui/__init__.py
# The README's install: there is no GPU during a build, so the flavour is named, not detected.
RUN --mount=type=cache,target=/root/.cache/pip \
    RRM_UI_FLAVOUR="${FLAVOUR}" RRM_UI_EXTRAS="${EXTRAS}" scripts/setup.sh

COPY . .

# An unprivileged user that owns only /data and its home (caches of vLLM, Triton, torch).
RUN groupadd --gid 10001 rrm \
    && useradd --create-home --uid 10001 --gid rrm rrm \
    && mkdir -p /data \
    && chown rrm:rrm /data

# The app's settings (rrm_ui/config.py reads RRM_UI_*; command-line options win over these).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/data/huggingface \
    RRM_UI_MODEL=${MODEL} \
    RRM_UI_DATABASE_URL=sqlite:////data/rrm_ui.db \
    RRM_UI_HOST=0.0.0.0 \
    RRM_UI_PORT=7860

VOLUME ["/data"]
EXPOSE 7860
USER 10001:10001

# "/" answers 200 with and without logins (/gradio_api/info answers 401 once accounts exist).
# It follows RRM_UI_PORT: set the port there rather than with --port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('RRM_UI_PORT', '7860'), timeout=4)"]

# app.py sees it already runs inside .venv and starts `rrm-ui serve` with these arguments.
ENTRYPOINT ["/app/.venv/bin/python", "/app/app.py"]
CMD []
