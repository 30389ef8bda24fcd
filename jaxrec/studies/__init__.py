"""Seed studies: many seeds of one config, what varies between them and its spread (study), and the
statistics that compare runs and studies (stats)."""
