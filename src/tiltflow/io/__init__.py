"""Readers and writers of tiltflow's own and RELION's files."""
