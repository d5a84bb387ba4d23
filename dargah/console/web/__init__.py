"""The console's web pages under ``/console/`` (Persian, right to left): sign-in, status,
incidents, the message log, the registry and its audit trail, with roles (see ``policy``)."""
