"""Import from and export to HuggingFace `RecurrentGemmaForCausalLM`."""
