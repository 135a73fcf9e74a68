"""SLR: what Selective Layer Restoration restores, and what a landscape of restorations holds.

Owns the restore modes and the layer-text parsers (intervals, a torch-free leaf), zero-copy hybrids of any
restoration (hybrid), Proxy-Soup (soup), per-layer weight drift (drift) and a landscape's results,
selection rules and Pareto front (landscape). It may import the foundation, models and crc. The engine
sits above it because the sweep builds on the restoration definitions, never the other way round.
"""
