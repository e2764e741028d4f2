"""battery-inspector: the line daemon and the ``inspector`` command."""

__version__ = "0.1.0"
