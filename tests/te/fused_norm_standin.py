"""A CPU stand-in for Transformer Engine's LayerNormLinear with TE's parameter layout.

TE fuses each pre-norm into the linear after it: the norm weight is the linear's own
`layer_norm_weight` (zero-centred: the gain is 1 + w), and the module saves an `_extra_state`
entry (FP8 scaling state) in checkpoints. This class has exactly those names and entries, and
computes RMSNorm then the column-parallel linear, so the te backend's checkpoint and naming
plumbing (layer_specs.FUSED_NORM_CHECKPOINT_KEYS, checkpoint.full_state.local_parameter_name, the
`_extra_state` handling of checkpoint/model.py) can be tested on machines where TE cannot run.
TE's standalone RMSNorm (the final norm) also has extra state; `NormWithExtraState` copies that.
The TE numerics themselves are tested in test_te_backend_gpu.py.
"""

import io

import torch
from megatron.core.tensor_parallel import ColumnParallelLinear

from griffin_megatron.modules.channel_parallel import init_device
from griffin_megatron.modules.norm import GriffinRMSNorm


class _ExtraState:
    """TE-style `_extra_state`: a pickled dict as a uint8 tensor; None (a checkpoint without it)
    is accepted and ignored, as TE does."""

    fp8_meta = {"recipe": "none", "step": 0}

    def get_extra_state(self):
        buffer = io.BytesIO()
        torch.save(self.fp8_meta, buffer)
        return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)

    def set_extra_state(self, state):
        if isinstance(state, torch.Tensor) and state.numel():
            self.fp8_meta = torch.load(io.BytesIO(state.numpy().tobytes()))


class NormWithExtraState(_ExtraState, GriffinRMSNorm):
    pass


class FusedNormColumnParallelLinear(_ExtraState, ColumnParallelLinear):
    def __init__(self, input_size, output_size, *, config, **kwargs):
        super().__init__(input_size, output_size, config=config, **kwargs)
        self.eps = config.layernorm_epsilon
        self.layer_norm_weight = torch.nn.Parameter(
            torch.zeros(input_size, dtype=config.params_dtype, device=init_device(config))
        )
        self.fp8_meta = dict(self.fp8_meta)

    def forward(self, x):
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return super().forward((normed * (1.0 + self.layer_norm_weight.float())).type_as(x))

    def step(self, x):  # as te_modules' TE linears: their one-token step is their forward
        return self(x)


class BiasFreeFusedNormColumnParallelLinear(FusedNormColumnParallelLinear):
    def __init__(self, *args, bias: bool = False, **kwargs):
        super().__init__(*args, bias=False, **kwargs)
