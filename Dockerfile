# Airflow 3.3 image with this project's pinned runtime set, the ThreatQ provider and its compiled
# ECS transform (native/, Rust + PyO3).
#   docker compose build        (docker-compose.yaml builds it as threatq-airflow:local)
# The provider is installed editable from /opt/threatq, and docker-compose.yaml mounts the repo's
# plugins/ and include/ over /opt/threatq/{plugins,include}, so code edits apply without a rebuild.
# The compiled transform is a wheel built in the first stage; only the wheel reaches the image
# (no Rust toolchain in it). Rebuild the image after changing native/.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# Stage 1: build the threatq-ecs-native wheel. Rust comes from the official rust image (same Debian
# release as the Python one, so its glibc is no newer than the Airflow image's); Python and
# maturin (the PEP 517 backend pip fetches) from the python image. One abi3 wheel fits CPython 3.10+.
FROM rust:1-slim-bookworm AS rust
FROM python:3.11-slim-bookworm AS native
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
# rustc links with the system C toolchain (cc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# Only the crate's sources: never a host native/target/ (built for another environment).
COPY native/pyproject.toml native/Cargo.toml native/Cargo.lock native/README.md /src/native/
COPY native/src /src/native/src
# Builds from the committed Cargo.lock ([tool.maturin] locked = true).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src/native

# Stage 2: the Airflow image.
FROM ${AIRFLOW_IMAGE}

USER airflow
# The same lock the tests run on (requirements.txt pins apache-airflow==3.3.2 itself).
COPY --chown=airflow:0 requirements.txt /opt/threatq/requirements.txt
RUN pip install --no-cache-dir -r /opt/threatq/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/threatq/
COPY --chown=airflow:0 plugins /opt/threatq/plugins
COPY --chown=airflow:0 include /opt/threatq/include
RUN pip install --no-cache-dir --no-deps -e /opt/threatq

# The compiled ECS transform (optional for the provider; installed here so the image runs it).
COPY --from=native --chown=airflow:0 /wheels /tmp/threatq-wheels
RUN pip install --no-cache-dir --no-deps /tmp/threatq-wheels/threatq_ecs_native-*.whl \
 && python -c "import threatq_ecs_native" \
 && rm -rf /tmp/threatq-wheels

ENV THREATQ_PROVIDER_INCLUDE_DIR=/opt/threatq/include
