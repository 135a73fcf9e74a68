"""Engine: the exact shared-work sweep that scores every interval, and what drives it.

Owns recording the post model's layer calls and the fail-loudly checks (capture), stacks of decoder layers
run over many states (stack), the shared prompt prefix (prefix), CRC scores from the LM head at each
prompt end and trie node (scoring), answer-trie layouts widened and relaid (layouts), the sweep itself
(sweep), the naive loops it is checked and timed against (naive), cached resumable landscapes and the
first look (cached_sweep), the lambda slice (lambda_slice), shards (shards) and the bench (benchmark).
It may import the foundation, models, crc and slr. Its modules, with all they import, make up the cache's code hash.
"""
