"""The inference engines as baselines: fastdl's model exported to ONNX (fastdl.onnx) and
run by ONNX Runtime and OpenVINO with every graph optimisation on and the bench's thread
count, so that the three compute the same network from the same weights."""


def runners(model, libs, threads):
    """{label: run(x) -> outputs} for the engines among libs, on the model's ONNX graph."""
    if not any(name in libs for name in ("onnxruntime", "openvino")):
        return {}
    from fastdl import onnx as fastdl_onnx

    graph = fastdl_onnx.to_onnx(model).SerializeToString()
    out = {}
    ort = libs.get("onnxruntime")
    if ort is not None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda x: session.run(None, {"input": x})[0]
    ov = libs.get("openvino")
    if ov is not None:
        core = ov.Core()
        compiled = core.compile_model(core.read_model(graph), "CPU",
                                      {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                       "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        out["openvino"] = lambda x: request.infer({0: x})[compiled.output(0)]
    return out
