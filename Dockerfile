# The image every Airflow service and the one-shot `setup` service run: the official Airflow image plus this
# project. Build: `docker compose build` (docker-compose.yml passes the same arguments).
#
# How the project goes in, and why this way: the official image is Airflow and its providers installed
# against Airflow's constraints file, and upgrading packages under it is how such images break. So
# deploy/image_requirements.py (run inside the build, against the packages the base image really has)
# asks pip for the project's runtime dependencies with pyproject.toml's own specifiers (the versions the
# tests run with) plus `apache-airflow==<the base's version>` so nothing can move Airflow, and constrains
# every package the base image lacks to requirements.lock's pin. Packages the base already has stay at
# Airflow's versions unless the project pins them; `pip check` then fails the build if anything clashes.
# The project itself is installed `--no-deps -e` from /opt/pipeline, so schemas/ and seeds/ sit where
# the code looks for them (next to the package). noida-db, the embedded server, is not installed: the
# containers always talk to Elasticsearch through ES_URL.

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

# The Celery executor's provider (the official image ships one; pinned here so the build is the same
# everywhere). EXTRA_REQUIREMENTS adds packages at build time, e.g. "s3fs==2026.9.0" for LANDING_URL=s3://...
ARG CELERY_PROVIDER=apache-airflow-providers-celery==3.26.0
ARG EXTRA_REQUIREMENTS=""

USER root
# Named volumes start as a copy of the image's directory, ownership included: create them for airflow.
RUN mkdir -p /opt/pipeline /opt/airflow/data /opt/airflow/landing \
 && chown -R airflow:0 /opt/pipeline /opt/airflow/data /opt/airflow/landing
USER airflow

WORKDIR /opt/pipeline
COPY --chown=airflow:0 pyproject.toml requirements.lock README.md ./
COPY --chown=airflow:0 deploy/image_requirements.py deploy/
RUN python deploy/image_requirements.py --lock requirements.lock --pyproject pyproject.toml --out /tmp/req \
        ${CELERY_PROVIDER} ${EXTRA_REQUIREMENTS} \
 && pip install --no-cache-dir -r /tmp/req/requirements.txt -c /tmp/req/constraints.txt

COPY --chown=airflow:0 pipeline/ pipeline/
COPY --chown=airflow:0 schemas/ schemas/
COPY --chown=airflow:0 seeds/ seeds/
RUN pip install --no-cache-dir --no-deps -e . \
 && pip check \
 && python -c "import pipeline.cli, pipeline.deploy"

# DAGs are baked in, so workers on other machines run the same code; docker-compose.yml also mounts
# ./dags over them on this host, so a DAG edit needs no rebuild there.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
WORKDIR /opt/airflow
