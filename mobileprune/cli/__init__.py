"""The ``mobileprune`` command line: ``export``, ``bench``, ``inspect``, ``demo``."""
