"""A tiny random Griffin saved the ways users have it: an HF directory with a word-level
tokenizer (transformers files, so lm-eval's `hf` model loads it too) and the converted
griffin-megatron checkpoint."""

import torch
from tokenizers import Tokenizer as BareTokenizer
from tokenizers import models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, RecurrentGemmaConfig, RecurrentGemmaForCausalLM

from griffin_megatron.cli.main import main

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
WORDS = SPECIALS + "the cat sat on a mat and dog ran far away red blue is yes no".split()
VOCAB = 64
WINDOW = 8


def word_tokenizer() -> BareTokenizer:
    words = WORDS + [f"w{i}" for i in range(VOCAB - len(WORDS))]
    tokenizer = BareTokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(SPECIALS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    return tokenizer


def random_text(words: int, seed: int) -> str:
    generator = torch.Generator().manual_seed(seed)
    vocabulary = WORDS[4:] + [f"w{i}" for i in range(VOCAB - len(WORDS))]
    picks = torch.randint(0, len(vocabulary), (words,), generator=generator)
    return " ".join(vocabulary[i] for i in picks.tolist())


def write_hf_dir(directory) -> None:
    torch.manual_seed(0)
    config = RecurrentGemmaConfig(
        num_hidden_layers=3, vocab_size=VOCAB, hidden_size=32, intermediate_size=96,
        num_attention_heads=2, num_key_value_heads=1, lru_width=32, attention_window_size=WINDOW,
        block_types=["recurrent", "recurrent", "attention"], pad_token_id=0, eos_token_id=1,
        bos_token_id=2,
    )
    model = RecurrentGemmaForCausalLM(config)
    with torch.no_grad():  # HF starts norms and biases at 0: make every parameter matter
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.normal_(0.0, 0.1)
            elif param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, param.shape[1] ** -0.5)
    model.save_pretrained(directory)
    PreTrainedTokenizerFast(
        tokenizer_object=word_tokenizer(), eos_token="<eos>", bos_token="<bos>",
        pad_token="<pad>", unk_token="<unk>",
    ).save_pretrained(directory)


def convert_to_checkpoint(hf_dir, ckpt) -> None:
    assert main(["convert", "hf-to-mcore", "--hf-dir", str(hf_dir), "--out", str(ckpt)]) == 0


def write_hf_and_checkpoint(root) -> tuple:
    """(HF directory, the checkpoint converted from it), written under `root`."""
    write_hf_dir(root / "hf")
    convert_to_checkpoint(root / "hf", root / "ckpt")
    return root / "hf", root / "ckpt"
