"""Fault tests: real nats-server and service processes, killed for real, with counts asserted."""
