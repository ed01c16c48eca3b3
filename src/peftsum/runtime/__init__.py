"""Where and how a job runs: precision, measurements, devices, provenance."""
