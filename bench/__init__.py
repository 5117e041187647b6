"""asyncgate's benchmark: ``python -m bench`` (``./dev bench``).

``stack`` starts nats-server and the services as processes, ``peers/`` the Celery + Redis peer,
``load`` and ``feeds`` generate work and see it done, ``probes`` read CPU and memory from /proc,
``workloads`` measure one thing each, ``rounds`` interleaves them, ``report`` writes
docs/performance.md.
"""
