"""Demonstrations run by ``flowrestore demo``."""
