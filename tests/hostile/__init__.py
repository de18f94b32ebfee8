"""Hostile scripts and bad input: crashes, floods, forks, garbage results, leaks and load."""
