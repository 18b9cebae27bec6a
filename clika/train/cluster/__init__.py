"""Cluster life of a training job: SLURM signals and requeue, the run lock, W&B across attempts, recovery."""
