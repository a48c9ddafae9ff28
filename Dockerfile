# One image for every scriptbus service; the command picks the service.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends bash procps && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scriptbus scriptbus
COPY libs libs
COPY services services
RUN pip install --no-cache-dir .
# `scriptbus` (uid 1000) runs the gateway, recorder and scheduler. Executors run as root so that scripts
# run as `scriptbus-run`, a user that can read neither the executor's environment nor the credentials;
# made here rather than at start so its uid is the same in every container sharing a runs volume.
RUN useradd --uid 1000 --create-home --shell /bin/bash scriptbus \
 && useradd --system --no-create-home --shell /usr/sbin/nologin scriptbus-run \
 && install -d -m 0711 /var/lib/scriptbus /var/lib/scriptbus/runs
# Run folders and the executor's journal: a volume, so a restarted executor reaps its predecessor's runs.
ENV SCRIPTBUS_WORK_DIR=/var/lib/scriptbus/runs
USER scriptbus
ENTRYPOINT ["scriptbus"]
CMD ["--help"]
