"""The edge: the GraphQL endpoint clients talk to."""
