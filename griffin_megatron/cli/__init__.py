"""The `griffin-megatron` command line: one module per subcommand."""
