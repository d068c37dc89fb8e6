# classify-batch: the slim runtime (onnxruntime, numpy, Pillow, typer) and the committed model
# (artifacts/model.onnx, package data). No TensorFlow, no compilers, no apt in the final image.
#
#   docker build -t classify-batch:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg MODEL_SHA256="$(sha256sum artifacts/model.onnx | cut -d' ' -f1)" .
#   docker run --rm --read-only --tmpfs /tmp --network none \
#     -v "$PWD/samples:/in:ro" -v "$PWD/out:/out" classify-batch:0.1.0 /in /out/digits.csv
# scripts/container-test does exactly this and checks the result.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what `pip install .` needs (see .dockerignore): metadata first, then the packages.
# README* and LICENSE* are globs so a checkout without them still builds (pyproject.toml always matches).
COPY pyproject.toml README* LICENSE* ./
# classify_batch/ links to jobs/, export/ and artifacts/ (see pyproject.toml): copy all four.
COPY classify_batch/ classify_batch/
COPY jobs/ jobs/
COPY export/ export/
COPY artifacts/ artifacts/
# Runtime dependencies only: no [train] extra, so no TensorFlow. All of them ship wheels.
# The training code is useless without TensorFlow: it leaves the image, and `digits train` there
# says in one line how to get it. The installers are not needed at run time either (~25 MB).
RUN pip install --no-cache-dir . \
    && rm -r "$(python -c 'import classify_batch, os; print(os.path.dirname(classify_batch.__file__))')/export" \
    && python -c "import classify_batch.jobs.run, classify_batch.artifacts, classify_batch.cli, classify_batch.entry" \
    && python -m pip uninstall --yes --quiet pip setuptools


FROM python:3.11-slim

ARG VERSION=0.0.0+unknown
ARG MODEL_SHA256=unknown
# Where the source lives: override with --build-arg SOURCE=... once the canonical URL is settled.
ARG SOURCE=https://github.com/classify-batch/classify-batch

LABEL org.opencontainers.image.title="classify-batch" \
      org.opencontainers.image.description="Batch job: handwritten digit images in, digits CSV out (ONNX model, no TensorFlow)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      io.classify-batch.model.sha256="${MODEL_SHA256}"

# ORT_DISABLE_TELEMETRY: onnxruntime's telemetry would try to persist a device id under $HOME
# (absent, read-only root fs: a warning in every job log) and to phone home from a batch job.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    PATH=/opt/venv/bin:$PATH

# A fixed non-root uid/gid so Kubernetes (runAsUser: 10001) and volume permissions can rely on it.
RUN groupadd --gid 10001 classify \
    && useradd --no-log-init --uid 10001 --gid 10001 \
       --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin classify

COPY --from=build /opt/venv /opt/venv

WORKDIR /data
USER 10001:10001

ENTRYPOINT ["classify-batch"]
CMD ["--help"]
