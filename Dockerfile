# Distillery: the same install as the README (scripts/setup.sh), then the pipeline flow.
# No Docker engine runs on the development machines; CI runs the same script (.ci/run).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
# A CPU build of torch; without this pip takes the CUDA build of torch==2.13.0.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    DVC_NO_ANALYTICS=1 \
    TOKENIZERS_PARALLELISM=false
WORKDIR /app
COPY . .
RUN bash scripts/setup.sh
# DVC needs a git repository; a build context without .git gets a fresh one.
RUN git rev-parse --git-dir >/dev/null 2>&1 || (git init -q && git add -A && \
    git -c user.name=distillery -c user.email=distillery@localhost commit -q -m "image")
# Run as an unprivileged user, not root: it owns the project (DVC, MLflow and Prefect write into it) and
# has its own home for caches (HF_HOME, PREFECT_HOME default under it).
RUN groupadd --system --gid 10001 distillery && \
    useradd --system --uid 10001 --gid distillery --create-home --home-dir /home/distillery distillery && \
    chown -R distillery:distillery /app
USER distillery
ENV HOME=/home/distillery
# The default runs the pipeline once. To serve it as a Prefect deployment (schedule, event trigger,
# one run at a time) against a Prefect server, override the command (README, "Run it on a schedule"):
#   docker run -e PREFECT_API_URL=http://<server>:4200/api <image> .venv/bin/python -m flows.deploy
CMD [".venv/bin/python", "-m", "flows.pipeline"]
