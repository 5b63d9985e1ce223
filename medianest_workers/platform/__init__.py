"""The job machinery: Celery app, job decorator, ledger, enqueue(), rescuer; no media domain."""
