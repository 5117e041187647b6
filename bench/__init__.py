"""Benchmarks that run asyncgate's real services against a throwaway nats-server.

``python -m bench.throughput`` measures submit rate, end-to-end completion and read rate.
"""
