"""Real processes (nats-server nodes, asyncgate services) that fault-injection tests can kill."""
