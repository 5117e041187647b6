"""What asyncgate is compared with: the stacks a Python team would otherwise reach for."""
