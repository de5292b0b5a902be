# Airflow 3.3 image with this project's pinned runtime set, the ThreatQ provider and its compiled
# ECS transform (native/, Rust + PyO3), installed from wheels as any deployment would; and, as a
# separate target, an image of the ThreatQ simulator and the MISP double.
#   docker compose build        (docker-compose.yaml builds threatq-airflow:local and, with
#                                --target simulators, threatq-simulators:local)
# Stage 1 builds the wheels with scripts/build-wheels (the same script as scripts/install-check);
# only the wheels reach the images: no source tree, no Rust toolchain. Rebuild after changing
# plugins/, simulators/ or native/ (`docker compose up -d --build`).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# Stage 1: airflow-provider-threatq, threatq-simulators and threatq-ecs-native (abi3,
# manylinux_2_34) wheels. Rust
# comes from the official rust image (same Debian release as the Python one, so its glibc is no
# newer than the Airflow image's); maturin and auditwheel at the versions of requirements-test.txt.
FROM rust:1-slim-bookworm AS rust
FROM python:3.11-slim-bookworm AS wheels
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
# rustc links with the system C toolchain (cc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements-test.txt /src/
RUN pip install --no-cache-dir -c /src/requirements-test.txt maturin auditwheel
# Only what the wheels are built from (.dockerignore keeps out native/target, dist/, build/).
COPY pyproject.toml README.md /src/
COPY plugins /src/plugins
COPY simulators /src/simulators
COPY native/pyproject.toml native/Cargo.toml native/Cargo.lock native/README.md /src/native/
COPY native/src /src/native/src
COPY scripts/build-wheels /src/scripts/
RUN bash /src/scripts/build-wheels /wheels

# Stage 2 (target simulators): threatq-sim and misp-double for docker-compose.yaml, in an image
# of their own, so the Airflow image (every worker) carries no simulator code. Their dependencies
# (PyMISP, pymispgalaxies) at the versions of the lock.
FROM python:3.11-slim-bookworm AS simulators
COPY requirements.txt /opt/threatq/requirements.txt
COPY --from=wheels /wheels /tmp/threatq-wheels
RUN pip install --no-cache-dir --find-links /tmp/threatq-wheels -c /opt/threatq/requirements.txt threatq-simulators \
 && threatq-sim --help >/dev/null && misp-double --help >/dev/null \
 && rm -rf /tmp/threatq-wheels
USER nobody

# Stage 3 (the default target): the Airflow image.
FROM ${AIRFLOW_IMAGE}

USER airflow
# The same lock the tests run on (requirements.txt pins apache-airflow==3.3.2 itself).
COPY --chown=airflow:0 requirements.txt /opt/threatq/requirements.txt
RUN pip install --no-cache-dir -r /opt/threatq/requirements.txt

# The provider with its [native] extra, only from the wheels just built (--no-index): the
# pip line of the README's "Install into your Airflow", with the lock as constraints.
COPY --from=wheels --chown=airflow:0 /wheels /tmp/threatq-wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/threatq-wheels \
      -c /opt/threatq/requirements.txt 'airflow-provider-threatq[native]' \
 && python -c "import threatq_provider, threatq_ecs_native" \
 && rm -rf /tmp/threatq-wheels
