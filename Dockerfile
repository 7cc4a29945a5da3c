# API + embedded runner. Needs DATABASE_URL (PostgreSQL or a Supabase connection string).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MIGRATIONS_DIR=/app/supabase/migrations
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY supabase ./supabase
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000
CMD ["uvicorn", "backend.app.app:app", "--host", "0.0.0.0", "--port", "8000"]
