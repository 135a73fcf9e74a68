# SLR Explorer as a Hugging Face Docker Space (or on any container host). See docs/hosting.md.
# Hosted mode is on (SLR_HOSTED=1: allow-listed sources, size and memory caps, export quota); for a
# private container, run with -e SLR_HOSTED=0 to open everything, as `python app.py` locally is.
#   docker build -t slr-explorer .
#   docker run -p 7860:7860 -v slr-data:/data slr-explorer
# BASE: any image with Python 3.11 and pip at python/pip (the Hub's python:3.11-slim by default; a local
# stand-in where the Hub is unreachable: ../shared/tools/docker-build.sh passes one).
ARG BASE=python:3.11-slim
FROM ${BASE}

# PyTorch's CPU wheels keep the image small. On GPU hardware build with
# --build-arg TORCH_INDEX_URL=https://pypi.org/simple (PyPI's Linux wheels bundle CUDA); on a Space,
# a variable named TORCH_INDEX_URL does the same.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# Spaces run the container as uid 1000: build as that user so the app owns its files.
# A fresh named volume mounted on /data copies this folder's owner, so /data must be the user's: a
# root-owned /data would be unwritable and the cache would fall back to ~/data, lost with the container.
RUN useradd -m -u 1000 user && mkdir -p /data && chown user:user /data
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    SLR_CACHE_DIR=/data/slr-cache \
    SLR_EXPORT_DIR=/data/slr-exports \
    HF_HOME=/data/huggingface \
    GRADIO_ANALYTICS_ENABLED=False \
    SLR_HOSTED=1
WORKDIR /home/user/app

RUN pip install --no-cache-dir --user torch==2.13.0 --index-url "$TORCH_INDEX_URL"
# torch above is already satisfied, so this adds the rest at the versions the tests run against.
COPY --chown=user requirements.txt /home/user/app/requirements.txt
RUN pip install --no-cache-dir --user -r requirements.txt

COPY --chown=user . /home/user/app

EXPOSE 7860
# /data is the Space's persistent volume when one is attached; without it (or when it is not
# writable) caches and exports fall back to ~/data inside the container, lost on restart.
ENTRYPOINT ["/bin/sh", "-c", "\
pick() { if mkdir -p \"$1\" 2>/dev/null && [ -w \"$1\" ]; then echo \"$1\"; else \
  echo \"warning: $1 is not writable by uid $(id -u); using $HOME/data/${1##*/}, lost with the container\" >&2; \
  echo \"$HOME/data/${1##*/}\"; fi; }; \
export SLR_CACHE_DIR=\"$(pick \"$SLR_CACHE_DIR\")\" SLR_EXPORT_DIR=\"$(pick \"$SLR_EXPORT_DIR\")\" HF_HOME=\"$(pick \"$HF_HOME\")\"; \
exec \"$@\"", "--"]
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
