"""Planning a training run before it starts: parameters, memory and FLOPs of a recipe whose layout
the config's own rules (`griffin_megatron.config`) have checked.

`griffin-megatron plan` is the command line face of this package.
"""
