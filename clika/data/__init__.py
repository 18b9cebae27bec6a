"""Benchmark data: the dataset registry (every dataset fact), loading, prompts, sft templates, the release."""
