"""Slurm: the facts of the job a worker runs in, and the batch script that starts a fleet."""
