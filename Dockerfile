# Airflow 3.3 image with this project's pinned runtime set and the ThreatQ provider.
#   docker compose build        (docker-compose.yaml builds it as threatq-airflow:local)
# The provider is installed editable from /opt/threatq, and docker-compose.yaml mounts the repo's
# plugins/ and include/ over /opt/threatq/{plugins,include}, so code edits apply without a rebuild.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER airflow
# The same lock the tests run on (requirements.txt pins apache-airflow==3.3.2 itself).
COPY --chown=airflow:0 requirements.txt /opt/threatq/requirements.txt
RUN pip install --no-cache-dir -r /opt/threatq/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/threatq/
COPY --chown=airflow:0 plugins /opt/threatq/plugins
COPY --chown=airflow:0 include /opt/threatq/include
RUN pip install --no-cache-dir --no-deps -e /opt/threatq

ENV THREATQ_PROVIDER_INCLUDE_DIR=/opt/threatq/include
