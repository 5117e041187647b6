"""``asyncgate ops``: the operator's command line (inspect operations, follow events, replay the
stream into the view, handle dead letters), a typer app mounted in ``services/cli.py``."""
