"""Custom ops: each in its own folder, the kernel beside its reference."""
