"""peftsum: compare parameter-efficient fine-tuning methods for abstractive summarization."""

__version__ = "0.1.0"
