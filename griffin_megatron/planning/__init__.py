"""Planning a training run before it starts: layout rules, parameters, memory, FLOPs.

`griffin-megatron plan` is the command line face of this package.
"""
