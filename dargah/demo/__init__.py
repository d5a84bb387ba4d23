"""The sandbox demo: sandbox agencies registered on an instance, and ``demo.json``."""
