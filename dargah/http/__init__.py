"""A lean HTTP/1.1 server for ASGI applications, built for the bus's per-request path."""
