"""Downstream: sampling from hybrids and the evaluations that judge them.

Owns generation with min-p through transformers' streamers and stopping criteria (sampling), diversity of
sampled text (metrics), log-likelihood per token (likelihood), open-ended QA and creative writing with
their data (qa, qa_data, writing, writing_data) and the evaluation of SLR against its baselines
(evaluation). It may import the foundation, models, crc, slr and engine; nothing here draws or serves.
"""
