"""Operator tools behind the CLI: `doctor`, `backup`, personal-data export and erasure."""
