"""ASCI shared core: settings, database, CLI entry point and the exception root."""

__version__ = "0.1.0"
