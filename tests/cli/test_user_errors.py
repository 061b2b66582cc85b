"""Only our own user-error types become one sentence and exit status 2; any other exception is a
bug and keeps its traceback (exit 1). Each raise site converted to a UserError subclass raises
that type (and still the built-in type a library caller catches)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from griffin_megatron import errors
from griffin_megatron.cli import main as cli_main


def _run_with(monkeypatch, exception):
    from griffin_megatron.cli import info

    def fail(args):
        raise exception

    monkeypatch.setattr(info, "run", fail)
    return cli_main.main(["info", "--preset", "griffin-tiny"])


def test_user_error_is_one_sentence_and_status_2(monkeypatch, capsys):
    status = _run_with(monkeypatch, errors.ConfigError("--x=1 must be 2; pass --x 2."))
    assert status == 2
    assert capsys.readouterr().err == "griffin-megatron info: error: --x=1 must be 2; pass --x 2.\n"


@pytest.mark.parametrize("exception", [ValueError("a bug"), KeyError("pre_wd_mult"),
                                       FileNotFoundError(2, "No such file"), ImportError("x")])
def test_other_exceptions_propagate(monkeypatch, exception):
    with pytest.raises(type(exception)):
        _run_with(monkeypatch, exception)


def test_a_bug_shows_its_traceback_and_exits_1(tmp_path):
    """From the outside: a KeyError inside a command (here from a deliberately broken command
    module) is not reported as bad input."""
    script = tmp_path / "broken.py"
    script.write_text(
        "import sys\n"
        "from griffin_megatron.cli import info, main\n"
        "def run(args):\n"
        "    raise KeyError('pre_wd_mult')\n"
        "info.run = run\n"
        "sys.exit(main.main(['info', '--preset', 'griffin-tiny']))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "KeyError: 'pre_wd_mult'" in done.stderr


def _preprocess(tmp_path, inputs, **kwargs):
    from griffin_megatron.data.preprocess import preprocess

    return preprocess(inputs, tmp_path / "out" / "corpus", vocab_size=300, **kwargs)


def _bad_json(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    return _preprocess(tmp_path, [str(tmp_path / "bad.jsonl")])


def _missing_key(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    return _preprocess(tmp_path, [str(tmp_path / "a.jsonl")])


def _hf_dir_without_config(tmp_path):
    from griffin_megatron.interop.hf import load_hf_checkpoint

    return load_hf_checkpoint(tmp_path)


def _hf_broken_config(tmp_path):
    from griffin_megatron.interop.hf import load_hf_checkpoint

    (tmp_path / "config.json").write_text("{\n")
    return load_hf_checkpoint(tmp_path)


def _hf_truncated_weights(tmp_path):
    from griffin_megatron.interop.hf import load_hf_checkpoint

    (tmp_path / "config.json").write_text('{"model_type": "recurrent_gemma"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    return load_hf_checkpoint(tmp_path)


def _sampling(**kwargs):
    from griffin_megatron.generation.sampling import SamplingParams

    return SamplingParams(**kwargs)


def _checkpoint_dir(tmp_path):
    from griffin_megatron.checkpoint.record import resolve_checkpoint_dir

    return resolve_checkpoint_dir(tmp_path / "nothing")


def _not_a_checkpoint(tmp_path):
    from griffin_megatron.checkpoint.record import read_model_record

    return read_model_record(tmp_path)


def _recipe(tmp_path):
    from griffin_megatron.recipes import load_recipe

    return load_recipe("no-such-recipe")


def _tokenizer(tmp_path):
    from griffin_megatron.data.tokenizers import load_tokenizer

    return load_tokenizer(tmp_path / "tokenizer.json")


def _not_a_tokenizer(tmp_path):
    from griffin_megatron.data.tokenizers import load_tokenizer

    (tmp_path / "tokenizer.json").write_text("{}")
    return load_tokenizer(tmp_path / "tokenizer.json")


def _backend(tmp_path):
    from griffin_megatron.layer_specs import check_backend

    return check_backend("cuda")


def _output_exists(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "corpus.bin").write_bytes(b"")
    return _preprocess(tmp_path, [str(tmp_path / "a.jsonl")])


def _hf_output_exists(tmp_path):
    from griffin_megatron.output_paths import check_output_directory

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    return check_output_directory(tmp_path / "out", "--out")


def _checkpoint_output_exists(tmp_path):
    from griffin_megatron.checkpoint.sharded_save import save_sharded_atomically

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "common.pt").write_bytes(b"")
    return save_sharded_atomically({}, tmp_path / "out", record={}, overwrite=False)


RAISE_SITES = {
    "HF output exists": (_hf_output_exists, errors.OutputExistsError, FileExistsError,
                         "already exists and is not empty"),
    "checkpoint output exists": (_checkpoint_output_exists, errors.OutputExistsError,
                                 FileExistsError, "already exists and is not empty"),
    "preprocess: no input": (lambda t: _preprocess(t, [str(t / "none.jsonl")]),
                             errors.InputFileError, FileNotFoundError, "matches no file"),
    "preprocess: bad JSON": (_bad_json, errors.DataError, ValueError, "is not valid JSON"),
    "preprocess: no text field": (_missing_key, errors.DataError, ValueError, "--json-key"),
    "preprocess: output exists": (_output_exists, errors.OutputExistsError, FileExistsError,
                                  "already exists"),
    "preprocess: workers": (lambda t: _preprocess(t, ["x"], workers=0), errors.ConfigError,
                            ValueError, "--workers=0"),
    "tokenizer missing": (_tokenizer, errors.InputFileError, FileNotFoundError, "does not exist"),
    "tokenizer not HF": (_not_a_tokenizer, errors.DataError, ValueError,
                         "is not a HuggingFace tokenizers file"),
    "HF dir without config": (_hf_dir_without_config, errors.InputFileError, FileNotFoundError,
                              "no config.json"),
    "HF broken config.json": (_hf_broken_config, errors.InputFileError, FileNotFoundError,
                              "cannot be read as an HF config"),
    "HF truncated safetensors": (_hf_truncated_weights, errors.InputFileError, FileNotFoundError,
                                 "truncated or damaged"),
    "sampling temperature": (lambda t: _sampling(temperature=-1.0), errors.ConfigError,
                             ValueError, "temperature=-1.0 must be >= 0"),
    "sampling top_p": (lambda t: _sampling(top_p=1.5), errors.ConfigError, ValueError,
                       "top_p=1.5 must be in (0, 1]"),
    "checkpoint missing": (_checkpoint_dir, errors.InputFileError, FileNotFoundError,
                           "does not exist"),
    "not a checkpoint": (_not_a_checkpoint, errors.CheckpointError, ValueError,
                         "is not a griffin-megatron checkpoint"),
    "recipe missing": (_recipe, errors.InputFileError, FileNotFoundError, "no recipe"),
    "unknown backend": (_backend, errors.ConfigError, ValueError, "backend='cuda'"),
}


@pytest.mark.parametrize("case", RAISE_SITES)
def test_raise_site_has_its_user_error_type(case, tmp_path):
    call, user_type, builtin, message = RAISE_SITES[case]
    with pytest.raises(user_type) as raised:
        call(tmp_path)
    assert isinstance(raised.value, builtin) and isinstance(raised.value, errors.UserError)
    text = str(raised.value)
    assert message in text and text.endswith("."), text


def test_preprocess_of_empty_input_leaves_nothing_behind(tmp_path):
    """The next run with good input must not be refused because of a first failed one."""
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(errors.DataError, match="hold no documents"):
        _preprocess(tmp_path, [str(tmp_path / "empty.jsonl")])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    (tmp_path / "good.jsonl").write_text('{"text": "the cat sat on the mat"}\n' * 20)
    result = _preprocess(tmp_path, [str(tmp_path / "good.jsonl")])
    assert result.documents == 20


@pytest.mark.parametrize("content, why", [
    (bytes(range(256)), "is not UTF-8"),
    (b"text\x00more", "NUL byte"),
], ids=["not UTF-8", "NUL byte"])
def test_preprocess_refuses_binary_input(tmp_path, content, why):
    (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(errors.DataError, match=why) as refused:
        _preprocess(tmp_path, [str(tmp_path / "model.bin")])
    assert str(refused.value).startswith(f"{tmp_path / 'model.bin'} is not a text file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [0, -5])
def test_preprocess_refuses_a_vocabulary_too_small(tmp_path, size):
    from griffin_megatron.data.preprocess import preprocess

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(errors.ConfigError, match=f"--vocab-size={size} is too small"):
        preprocess([str(tmp_path / "a.jsonl")], tmp_path / "out" / "c", vocab_size=size)
    assert not (tmp_path / "out").exists()


def test_preprocess_refuses_an_output_prefix_under_a_file(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "file").write_text("")
    from griffin_megatron.data.preprocess import preprocess

    with pytest.raises(errors.InputFileError, match="which is a file, not a directory"):
        preprocess([str(tmp_path / "a.jsonl")], tmp_path / "file" / "sub" / "corpus")


@pytest.mark.parametrize("extra, message", [
    (["--temperature", "-1"], "temperature=-1.0 must be >= 0"),
    (["--top-p", "1.5"], "top_p=1.5 must be in (0, 1]"),
    (["--tensor-parallel-size", "2"], "needs a multiple of 2 processes but 1 were launched"),
], ids=["temperature", "top-p", "TP without torchrun"])
def test_generate_refuses_bad_options_before_loading(tmp_path, capsys, monkeypatch, extra,
                                                      message):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    status = cli_main.main(["generate", "--load", str(tmp_path / "nothing"), "--prompt", "Once",
                            *extra])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""  # nothing loaded, no prompt echoed
    assert captured.err.startswith("griffin-megatron generate: error: ") and message in captured.err


def test_ctrl_c_outside_training_is_one_line_and_status_130(monkeypatch, capsys):
    assert _run_with(monkeypatch, KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "griffin-megatron info: interrupted.\n"
