"""`griffin-megatron generate`: text in, streamed text out, from an HF directory or a checkpoint."""

import pytest

from griffin_megatron.cli.main import main
from griffin_megatron.generation import generate_text, load_generation_tokenizer
from griffin_megatron.interop.hf import from_hf

from tests.fixtures.checkpoints import write_hf_dir
from tests.fixtures.word_tokenizers import PROMPT, transformers_tokenizer, word_tokenizer


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny random HF RecurrentGemma directory with a bare tokenizer.json beside it."""
    return write_hf_dir(tmp_path_factory.mktemp("hf"), bare_tokenizer=True)


def _expected_text(hf_dir, max_new_tokens):
    tokenizer = load_generation_tokenizer(hf_dir)
    return generate_text(from_hf(hf_dir), tokenizer, PROMPT, max_new_tokens=max_new_tokens)


def test_generate_from_hf_dir_streams_the_continuation(hf_dir, capsys):
    assert main(["generate", "--hf-dir", str(hf_dir), "--prompt", PROMPT,
                 "--max-new-tokens", "8", "--ignore-eos"]) == 0
    out = capsys.readouterr().out
    expected = _expected_text(hf_dir, 8)
    assert expected.strip()
    assert out == PROMPT + expected + "\n"


def test_generate_from_converted_checkpoint(hf_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "hf-to-mcore", "--hf-dir", str(hf_dir), "--out", str(ckpt)]) == 0
    assert (ckpt / "tokenizer.json").is_file()
    capsys.readouterr()
    assert main(["generate", "--load", str(ckpt), "--prompt", PROMPT, "--max-new-tokens", "6",
                 "--ignore-eos"]) == 0
    assert capsys.readouterr().out == PROMPT + _expected_text(hf_dir, 6) + "\n"


def test_transformers_tokenizer_directory_matches_the_bare_tokenizer(tmp_path):
    hf_dir, bare_dir = tmp_path / "transformers", tmp_path / "bare"
    bare_dir.mkdir()
    transformers_tokenizer().save_pretrained(hf_dir)
    word_tokenizer().save(str(bare_dir / "tokenizer.json"))
    hf, bare = load_generation_tokenizer(hf_dir), load_generation_tokenizer(bare_dir)
    assert hf.source.startswith("transformers") and bare.source.startswith("tokenizers")
    assert hf.encode(PROMPT) == bare.encode(PROMPT) == [2, 4, 5, 6, 7]
    assert hf.decode([2, 4, 5, 1]) == bare.decode([2, 4, 5, 1]) == "the cat"
    assert hf.eos_token_id == bare.eos_token_id == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "prompt 1 is empty"),
        (["--prompt", "the cat", "--max-new-tokens", "0"], "--max-new-tokens 0"),
        (["--prompt", "the cat", "--top-p", "1.5"], "top_p=1.5"),
    ],
)
def test_user_errors_are_one_sentence(hf_dir, capsys, extra, message):
    assert main(["generate", "--hf-dir", str(hf_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_tokenizer_is_reported(hf_dir, tmp_path, capsys):
    bare_model = tmp_path / "model"
    bare_model.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare_model / name).write_bytes((hf_dir / name).read_bytes())
    assert main(["generate", "--hf-dir", str(bare_model), "--prompt", "the cat"]) == 2
    assert "no tokenizer found" in capsys.readouterr().err


@pytest.mark.parametrize("sources", [[], ["--load", "a", "--hf-dir", "b"]], ids=["neither", "both"])
def test_exactly_one_model_source(sources, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *sources, "--prompt", "the cat"])
    assert exit_info.value.code == 2
    assert "--load" in capsys.readouterr().err
