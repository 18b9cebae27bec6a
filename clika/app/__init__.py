"""The application: the only room that knows Hydra (environment, launch, run dir, help, checks, entry points)."""
