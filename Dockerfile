# The content-tagger worker. The model is trained at build time from the dataset in the repository,
# so the image serves only ONNX + its JSON card and needs no network at run time.
FROM python:3.11-slim AS build
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY model_export ./model_export
COPY tools ./tools
COPY data ./data
RUN pip install --no-cache-dir . && python -m model_export --out /app/artifacts/model

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /usr/local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages
COPY --from=build /usr/local/bin /usr/local/bin
COPY --from=build /app/artifacts/model /app/model
COPY stream_app ./stream_app
COPY tools ./tools
COPY schemas ./schemas
COPY data ./data
# Everything the worker writes (title index, decisions, reviewer accounts, candidate and registry models) is under
# /app/state, the one folder its user owns; docker-compose.yml keeps it in a named volume.
RUN useradd --create-home --uid 10001 tagger && mkdir -p /app/state && chown tagger /app/state
# By uid: Kubernetes' runAsNonRoot can check a number, not a name.
USER 10001
# Unbuffered output, so `docker compose logs` shows the worker's and the replay's lines as they happen.
ENV PYTHONUNBUFFERED=1 \
    TAGGER_MODEL_DIR=/app/model \
    TAGGER_WEB_HOST=0.0.0.0 \
    TAGGER_WEB_PORT=6066 \
    TAGGER_DATA_DIR=/app/state \
    TAGGER_LABELS_PATH=/app/state/labels/labels.jsonl \
    TAGGER_REVIEWERS_FILE=/app/state/reviewers \
    TAGGER_CANDIDATES_DIR=/app/state/candidates
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2)"]
CMD ["python", "-m", "stream_app", "worker", "-l", "info"]
