"""Compiled kernels, built from the Cython sources in kernels/ (see setup.py)."""
