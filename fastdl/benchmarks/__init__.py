"""fastdl's benchmark suite against framework baselines: `python -m fastdl bench`.

Each suite builds Cases: one operation on one shape, run by fastdl and by every
baseline library that is installed, on the same data, dtype and thread count. The
harness checks that the outputs agree, then times the candidates interleaved.
"""
