"""Benchmarks, the GPU check and job timings: command-line tools beside the workflow."""
