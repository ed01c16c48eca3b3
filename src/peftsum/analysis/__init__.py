"""Tables and tests over finished runs' files: aggregate, learning curves, statistics."""
