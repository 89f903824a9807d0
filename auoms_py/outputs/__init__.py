"""Outputs: where formatted events go (syslog, file, stdout). See base.py for the life cycle."""
