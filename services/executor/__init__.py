"""The executor: runs requested operations and records how each one ended."""
