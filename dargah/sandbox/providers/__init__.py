"""The HTTP providers of the sandbox agencies, one module per agency."""
