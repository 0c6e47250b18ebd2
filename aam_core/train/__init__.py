"""Training: losses, metrics, the loop, optimiser and schedule, callbacks."""
