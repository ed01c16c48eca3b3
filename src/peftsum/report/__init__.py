"""The report and explorer rendered from the results files (no torch)."""
