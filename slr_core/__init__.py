"""SLR Explorer's library: Selective Layer Restoration hybrids, the CRC proxy and its landscape."""

__version__ = "0.1.0"
