"""Data: sources -> cached tokenization (pt packing / sft templates) -> mixtures -> DataModule."""
