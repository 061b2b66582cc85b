"""Evaluation of Hawk / Griffin language models.

- `chunked`: per-token losses of arbitrarily long sequences, prefilled chunk by chunk through the
  recurrent state and the sliding-window attention cache (memory of one chunk);
- `buckets`: loss summed by log-spaced position buckets;
- `sequences`: the token sequences to evaluate (a Megatron indexed dataset split, or text files);
- `report`: the printed table, the JSON file and the PNG plot;
- `lm_eval_model`: the model type `griffin-megatron` for lm-evaluation-harness.
"""
