# The unet-search image: Python 3.11, PyTorch with CUDA (the default build PyPI serves for Linux x86_64
# bundles the CUDA runtime; the node only needs the NVIDIA driver and device plugin), the project
# installed, and a non-root user. The Kubernetes manifests in k8s/ run it; see README "Run on Kubernetes".
#
#   docker build -t REGISTRY/unet-search:0.1.0 . && docker push REGISTRY/unet-search:0.1.0
FROM python:3.11-slim-bookworm

# The pods mount the root filesystem read-only with an emptyDir at /tmp: every cache and config
# directory a library might write (torch, triton, matplotlib, XDG) points there.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/app \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCH_HOME=/tmp/torch \
    TRITON_CACHE_DIR=/tmp/triton

# A numeric UID, so that Kubernetes can check runAsNonRoot (the manifests run as 10001 too).
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, from pyproject.toml alone (with empty packages), so that a code change does not
# reinstall them. No constraints/cpu.txt here: this is the GPU image. ray[default] adds the Ray
# dashboard and job server that KubeRay's RayJob submits through; its version is the rayVersion of
# k8s/overlays/ray/rayjob.yaml.
ARG RAY_VERSION=2.60.0
COPY pyproject.toml README.md ./
RUN mkdir unet search \
    && touch unet/__init__.py search/__init__.py \
    && pip install -e . "ray[default]==${RAY_VERSION}" \
    && rm -r unet search

# The code, installed in editable mode so that search.spec finds the shipped studies in /app/studies.
COPY unet/ unet/
COPY search/ search/
COPY studies/ studies/
RUN pip install --no-deps -e . && python -m compileall -q unet search

USER 10001:10001
ENTRYPOINT ["python", "-m", "search.run"]
CMD ["--list"]
