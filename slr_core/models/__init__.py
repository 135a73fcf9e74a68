"""Models: where a pair comes from and how it sits in memory.

Owns parsing a model string and fingerprinting its content (sources), loading one model or a checked
pre/post pair (loading), the one place that knows where a model keeps its layers, final norm and head
(architectures), the one place that resolves device and dtype (settings), device maps through accelerate
(placement, device_maps), named pairs (presets), the offline demo pair (demo, demo_data), chat formatting
(chat) and hosted mode's rules for what may be loaded (hosting). It may import only the foundation
modules (errors, files, inputs, cache); every other package imports it.
"""
