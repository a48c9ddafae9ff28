# One image for every scriptbus service; the command picks the service.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends bash procps && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scriptbus scriptbus
COPY libs libs
COPY services services
RUN pip install --no-cache-dir .
# Scripts run as this unprivileged user, never as root.
RUN useradd --create-home --shell /bin/bash scriptbus
USER scriptbus
ENTRYPOINT ["scriptbus"]
CMD ["--help"]
