"""A Starlette endpoint enqueueing a Celery task (Redis broker and result backend, prefork pool
of 2) that runs the same strawberry query asyncgate runs."""
