# One image for treatyflow's own processes; docker-compose.yml picks the process:
#   python -m treatyflow.workers.worker                Temporal worker (workflows + delivery)
#   python -m treatyflow.workers.gateway               RabbitMQ hub.inbound -> Temporal
#   python -m treatyflow.simulation.simulator --serve  simulated competent authorities
#   python -m treatyflow.workers.codec                 codec endpoint for the Temporal UI
# Broker passwords, signing keys and payload keys are not baked in: they are generated on the host
# (deploy/README.md) and mounted read-only at $TREATYFLOW_STATE_DIR/secrets.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TREATYFLOW_STATE_DIR=/var/lib/treatyflow

# Only what the package needs: never the host's .venv or .state (secrets) folders.
WORKDIR /tmp/treatyflow-src
COPY pyproject.toml ./
COPY treatyflow ./treatyflow
RUN pip install . \
    && cd / && rm -rf /tmp/treatyflow-src

# A non-root default user. docker-compose.yml runs the containers as the host user
# (HOST_UID:HOST_GID) instead, so that they can read the owner-only secrets folder;
# run/ (the processes' ready markers) is writable for whichever uid that is.
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /var/lib/treatyflow --shell /usr/sbin/nologin treatyflow \
    && mkdir -p /var/lib/treatyflow/run \
    && chown -R treatyflow:treatyflow /var/lib/treatyflow \
    && chmod 1777 /var/lib/treatyflow/run

WORKDIR /var/lib/treatyflow
USER treatyflow

CMD ["python", "-m", "treatyflow.workers.worker"]
