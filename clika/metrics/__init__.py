"""Metrics as pure functions: alignment (RA, en-CO, bootstrap), circular evaluation, position bias, PriDe."""
