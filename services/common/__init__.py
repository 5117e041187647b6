"""What every service shares: configuration, the NATS connection and the JetStream declarations."""
