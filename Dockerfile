# One image for both services:
#   docker run IMAGE python -m cache_service --redis-url redis://...
#   docker run IMAGE python -m bridge --grpc-target ... --jwt-secret ...
# Build:  docker build -t marketbridge/marketbridge:0.1.0 .
# Offline (no image registry): scripts/build_base_image.sh, then
#   docker build --build-arg BASE_IMAGE=marketbridge/python:3.11-bookworm ...
# A private package mirror: --build-arg PIP_INDEX_URL=... (or PIP_FIND_LINKS + PIP_NO_INDEX=1).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the project and its dependencies, from wheels ----
FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/sh", "-eu", "-c"]
RUN python3 -m venv /opt/marketbridge
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
COPY cache_service ./cache_service
COPY marketbridge ./marketbridge
# setuptools/wheel for the build backend come from the same index as the dependencies.
RUN /opt/marketbridge/bin/pip install "setuptools>=77" wheel \
 && /opt/marketbridge/bin/pip install --no-build-isolation . \
 && /opt/marketbridge/bin/pip uninstall -y setuptools wheel pip \
 && /opt/marketbridge/bin/python -m compileall -q /opt/marketbridge/lib

# ---- runtime: the virtualenv and an unprivileged user, nothing else ----
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="marketbridge" \
      org.opencontainers.image.description="gRPC cache service and WebSocket bridge for real-time market data" \
      org.opencontainers.image.licenses="Apache-2.0"
SHELL ["/bin/sh", "-eu", "-c"]
RUN groupadd --system --gid 10001 marketbridge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin marketbridge
COPY --from=build /opt/marketbridge /opt/marketbridge
ENV PATH=/opt/marketbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
# bridge: WebSocket + HTTP; cache service: gRPC and metrics.
EXPOSE 8080 50051 9101
CMD ["python", "-m", "bridge"]
