"""An example service that consumes asyncgate's completion events (see its app module)."""
