"""Export: a chosen hybrid leaves the tool as files others can use.

Owns landscape CSVs and hybrids written as model folders and zips (writer), the Hub model card
(model_card), the mergekit config that rebuilds an export (mergekit_config) and pushing to the Hub (hub).
It may import the foundation and every package below it (models, crc, slr, engine, downstream, report);
only serve and the entry points import it.
"""
