"""Celery workers that run AAM jobs."""
