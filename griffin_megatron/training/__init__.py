"""`griffin-megatron train`: the pretraining driver built from Megatron-Core's parts.

arguments.py   options (Megatron-LM's names), --config files, checks before launch, and the
               run's settings (griffin_megatron.run_config: RunConfig, the GriffinConfig)
default_run.py the embedded default run (Python standard library corpus, tiny Griffin)
data.py        BlendedMegatronDatasetBuilder + GPTDataset, samplers, tokenizer checks
setup.py       what a run settles before its first step
trainer.py     one step / evaluation through Megatron's schedules; NaN skipping
loop.py        pretrain(): the run
logging.py     log lines, tqdm, TensorBoard, W&B
signals.py     SIGTERM / SIGINT -> save and exit

Checkpoints (layout, resume, RNG state, the --save directory rules) live in
griffin_megatron.checkpoint.
"""
