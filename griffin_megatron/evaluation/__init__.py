"""Evaluation of Hawk / Griffin language models.

- `chunked`: per-token losses of arbitrarily long sequences, prefilled chunk by chunk through the
  recurrent state and the sliding-window attention cache (memory of one chunk);
- `buckets`: loss summed by log-spaced position buckets;
- `sequences`: the token sequences to evaluate (a Megatron indexed dataset split, or text files);
- `report`: the summary, the printed table and the PNG plot;
- `output_dir`: evaluate's output directory, checked first and written as a whole;
- `lm_eval_model`: the model type `griffin-megatron` for lm-evaluation-harness.
"""
