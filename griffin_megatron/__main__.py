"""`python -m griffin_megatron ...` is the `griffin-megatron` command."""

import sys

from griffin_megatron.cli.main import main

sys.exit(main())
