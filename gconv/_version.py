"""gconv's version, in one place: read by setuptools for the metadata and imported by gconv.__init__."""

__version__ = "0.1.0"
