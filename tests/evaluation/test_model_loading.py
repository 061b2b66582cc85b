"""`griffin_megatron.loading.load_model`, the one loader behind `generate`, `evaluate` and
`lm-eval`: both sources give the same model in each dtype, and the refusals are the same
sentence whichever command meets them."""

import pytest
import torch

from griffin_megatron.cli.main import main
from griffin_megatron.errors import ConfigError
from griffin_megatron.loading import load_model

from tests.fixtures.checkpoints import write_hf_and_checkpoint


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(HF directory, the griffin-megatron checkpoint converted from it)."""
    return write_hf_and_checkpoint(tmp_path_factory.mktemp("sources"))


@pytest.mark.parametrize("dtype, torch_dtype", [("fp32", torch.float32),
                                                ("bf16", torch.bfloat16)], ids=["fp32", "bf16"])
def test_both_sources_give_the_same_model(sources, dtype, torch_dtype):
    hf_dir, ckpt = sources
    from_hf = load_model(None, str(hf_dir), dtype)
    from_checkpoint = load_model(str(ckpt), None, dtype)
    for model in (from_hf, from_checkpoint):
        assert not model.training
        assert model.config.params_dtype == torch_dtype
        assert model.config.bf16 is (dtype == "bf16")
    hf_state, ckpt_state = from_hf.state_dict(), from_checkpoint.state_dict()
    weights = [name for name, value in hf_state.items() if isinstance(value, torch.Tensor)
               and value.is_floating_point() and "_extra_state" not in name]
    assert weights
    for name in weights:
        assert hf_state[name].dtype == torch_dtype, name
        assert torch.equal(hf_state[name], ckpt_state[name]), name


def test_a_dtype_no_model_runs_in_is_refused(sources):
    with pytest.raises(ConfigError, match="dtype 'fp16' is not one a model runs in here; use "
                                          "one of fp32, bf16"):
        load_model(None, str(sources[0]), "fp16")


@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_a_checkpoint_given_as_hf_dir_is_named_by_every_command(sources, command, tmp_path,
                                                                capsys):
    """`generate` had a loader of its own, which said only that config.json was missing."""
    ckpt = sources[1]
    extra = {"generate": ["--prompt", "the cat"],
             "evaluate": ["--text-files", str(tmp_path / "a.txt"), "--seq-length", "16",
                          "--output-dir", str(tmp_path / "out"), "--no-plot"]}[command]
    (tmp_path / "a.txt").write_text("the cat sat on a mat")
    assert main([command, "--hf-dir", str(ckpt), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{ckpt} is a Megatron checkpoint, not an HF directory; pass it as --load" in err
    assert not (tmp_path / "out").exists()
