"""The bench: our training loop and evaluation side by side with the Hugging Face Trainer, a
pad-to-max-length loop and pipeline("text-generation"); run it with python -m peftsum.tools.bench."""
