"""Training callbacks: checkpoints, the CLiKA evaluation, the NaN guard, preemption."""
