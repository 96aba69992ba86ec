"""The `workbook` command lives in `workbook/cli.py`; this file keeps `python cli.py` and
`import cli` working from a checkout."""

from workbook.cli import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
