"""Sources, splits, subsets, tokenization and the base model's files."""
