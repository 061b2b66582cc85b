"""The layers of a Griffin block: recurrent block (Conv1D + RG-LRU), local attention, RMSNorm,
channel-parallel parameters, and the Transformer Engine variants."""
