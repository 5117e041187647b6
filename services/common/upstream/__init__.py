"""Upstream mode: asyncgate in front of an existing GraphQL HTTP API (``ASYNCGATE_UPSTREAM_URL``)
instead of an in-process strawberry schema. The edge validates against the API's schema and
forwards its fields; executors POST queued operations to it (services/common/target.py)."""
