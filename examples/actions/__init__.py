"""The demo action: ``place_order``, declared the Hasura way, with a small HTTP handler."""

from pathlib import Path

ACTIONS_FILE = Path(__file__).with_name("actions.yaml")
