"""Example target schemas that asyncgate serves out of the box."""
