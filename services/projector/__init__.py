"""The projector: folds operation events into the status view in the KV bucket."""
