"""Simulated screens with known truth: identifiability, target graph, transfer."""
