"""asyncgate's services: edge (GraphQL), executor (runs operations), projector (builds the view)."""
