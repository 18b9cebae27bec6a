"""Scoring: requests and tasks (api), the one runner, the shared-prefix cache, log-likelihood and generation
scorers, judges, and the release's inference protocol (release)."""
