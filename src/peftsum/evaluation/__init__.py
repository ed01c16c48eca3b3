"""Generation, ROUGE and the use of a trained run (summarize, export)."""
