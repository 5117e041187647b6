"""Hasura-style actions: operations backed by the user's own HTTP handler.

Declared as Hasura users know them: GraphQL SDL for the action's field and types
(``actions.graphql``) and, per action, handler URL, kind, timeout and headers
(``actions.yaml`` beside it).
"""
