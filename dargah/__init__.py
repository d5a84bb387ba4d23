"""Dargah: the Government Service Bus and the smart government services portal."""

__version__ = "0.1.0"
