"""`griffin-megatron train`: the pretraining driver built from Megatron-Core's parts.

arguments.py   options (Megatron-LM's names), --config files, checks before launch
default_run.py the embedded default run (Python standard library corpus, tiny Griffin)
model_config.py  options -> GriffinConfig
data.py        BlendedMegatronDatasetBuilder + GPTDataset, samplers, tokenizer checks
setup.py       what a run settles before its first step
trainer.py     one step / evaluation through Megatron's schedules; NaN skipping
loop.py        pretrain(): the run
checkpoint.py  Megatron-LM checkpoint layout, resume, RNG state
logging.py     log lines, tqdm, TensorBoard, W&B
signals.py     SIGTERM / SIGINT -> save and exit
"""
