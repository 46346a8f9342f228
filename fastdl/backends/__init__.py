"""Backends: modules implementing the same kernel functions on validated arrays.

fastdl.ops validates and normalises every argument, then calls the function of the
same name in the active backend with C-contiguous arrays of one dtype, a geometry
(fastdl.ops._geometry.Window) where one applies, and a preallocated output.
"""
