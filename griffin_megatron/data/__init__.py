"""Text data: tokenizers, and preprocessing raw text into Megatron indexed datasets."""
