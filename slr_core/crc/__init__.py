"""CRC: the Constrained Random Character proxy, as data and as token layouts.

Owns the prompt sets, their valid answer tokens and the Q / D / strict-quality arithmetic (prompts), and
the answer-branch layout that lets one forward pass score every answer's end-of-turn mass (branches). It
may import the foundation and models (for chat formatting); it knows nothing of hybrids or sweeps.
"""
