"""auoms-py: a Linux audit forwarding agent compatible with Microsoft AUOMS."""

__version__ = "0.1.0"
