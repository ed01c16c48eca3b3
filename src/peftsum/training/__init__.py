"""The training loop shared by every method, its loss, checkpoints, grids and locks."""
