# The journey engine: `journey run` against PostgreSQL (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY workers ./workers
RUN pip install --no-cache-dir .
COPY journeys ./journeys
COPY templates ./templates
ENV JOURNEY_HOST=0.0.0.0
EXPOSE 8000
CMD ["journey", "run", "journeys"]
