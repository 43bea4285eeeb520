"""asv benchmark suite for padbench: thin classes over `padbench.runner` (see docs/asv.md)."""
