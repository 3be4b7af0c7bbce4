FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY frontend frontend
RUN pip install --no-cache-dir .
ENV GRADSCOPE_CACHE=/data/jax-cache
VOLUME /data
EXPOSE 8000
CMD ["gradscope", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
