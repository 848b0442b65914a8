"""Command-line interface. Only this sub-package imports typer."""
