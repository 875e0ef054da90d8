"""Benchmarks of scvi-causal: scripts and their committed results (never imported by ``src``).

Each script runs as a module from the repository root, e.g.
``python -m benchmarks.simulated.run``; ``benchmarks/README.md`` (written by
``python -m benchmarks.summary``) is the summary of every result, and ``benchmarks._common``
holds what the scripts share.
"""
