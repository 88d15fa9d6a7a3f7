"""The RKNN worker: runs INSIDE the managed rknn environment (python -u rknn_worker.py), never in edgekit's.

It imports only the standard library, numpy and rknn (plus protocol.py beside it, loaded by path), so
it works in an environment where edgekit itself is not installed. Methods (edgekit.worker/1):

- hello {check_import?}: versions of the vendor stack; with check_import, imports rknn.api too.
- build {model, target_platform, quantize, dataset?, mean_values?, std_values?, quantized_dtype?,
  quantized_algorithm?, quantized_method?, optimization_level?, output?, accuracy_analysis?, simulate?}:
  config -> load_onnx -> build -> export_rknn [-> accuracy_analysis] [-> init_runtime() = simulator].
- open {rknn, target, device_id?}: load_rknn -> init_runtime(target=...) on a connected board.
- infer {session, inputs: [array], data_format?}: outputs as arrays.
- release {session}; shutdown.
"""

import importlib.util
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path.pop(0)  # do not expose edgekit/toolchains/*.py as top-level modules to the vendor


def _load_protocol():
    spec = importlib.util.spec_from_file_location("edgekit_worker_protocol", os.path.join(_HERE, "protocol.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


protocol = _load_protocol()
SESSIONS = {}
_NEXT = [1]


def _versions():
    from importlib import metadata

    found = {}
    for dist in ("rknn-toolkit2", "rknn-toolkit-lite2", "numpy", "onnx", "onnxruntime", "protobuf", "torch",
                 "setuptools", "opencv-python-headless", "opencv-python"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def hello(params):
    result = {"protocol": protocol.PROTOCOL, "pid": os.getpid(), "python": sys.version.split()[0],
              "executable": sys.executable, "versions": _versions()}
    if params.get("check_import"):
        mark = protocol.TEE.mark() if protocol.TEE else 0
        start = time.perf_counter()
        try:
            from rknn.api import RKNN  # noqa: F401
        except BaseException as exc:  # a broken vendor install may even sys.exit
            raise protocol.VendorFailure(f"import rknn.api failed ({type(exc).__name__}: {exc})",
                                         protocol.vendor_lines(mark)) from None
        result["import_s"] = round(time.perf_counter() - start, 3)
    return result


def _vendor(step, func, *args, **kwargs):
    """Call a toolkit function; its -1 return or exception becomes a VendorFailure with what it printed."""
    mark = protocol.TEE.mark() if protocol.TEE else 0
    try:
        ret = func(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the toolkit calls sys.exit on some errors
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[-1] if lines else type(exc).__name__
        raise protocol.VendorFailure(f"RKNN {step} failed ({detail})", protocol.vendor_lines(mark)) from None
    if isinstance(ret, int) and ret != 0:
        raise protocol.VendorFailure(f"RKNN {step} returned {ret}", protocol.vendor_lines(mark))
    return ret


def _require(params, key):
    if key not in params:
        raise protocol.BadParams(f"missing param {key!r}")
    return params[key]


def _new_session(rknn):
    sid = _NEXT[0]
    _NEXT[0] += 1
    SESSIONS[sid] = rknn
    return sid


def build(params):
    from rknn.api import RKNN

    model = _require(params, "model")
    target_platform = _require(params, "target_platform")
    quantize = bool(params.get("quantize", False))
    dataset = params.get("dataset")
    if quantize and not dataset:
        raise protocol.BadParams("INT8 build needs a dataset list file")
    config = {"target_platform": target_platform}
    for key in ("mean_values", "std_values", "quantized_dtype", "quantized_algorithm", "quantized_method",
                "optimization_level", "float_dtype"):
        if params.get(key) is not None:
            config[key] = params[key]
    rknn = RKNN(verbose=bool(params.get("verbose", False)))
    keep = False
    try:
        timings = {}
        _vendor("config", rknn.config, **config)
        start = time.perf_counter()
        load_kwargs = {}
        if params.get("inputs"):
            load_kwargs["inputs"] = params["inputs"]
            load_kwargs["input_size_list"] = params["input_size_list"]
        _vendor("load_onnx", rknn.load_onnx, model, **load_kwargs)
        timings["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        _vendor("build", rknn.build, do_quantization=quantize, dataset=dataset if quantize else None)
        timings["build_s"] = time.perf_counter() - start
        result = {"config": config, "quantized": quantize}
        if params.get("output"):
            _vendor("export_rknn", rknn.export_rknn, params["output"])
            result["output"] = params["output"]
            result["size"] = os.path.getsize(params["output"])
        analysis = params.get("accuracy_analysis")
        if analysis:
            start = time.perf_counter()
            out_dir = _require(analysis, "output_dir")
            _vendor("accuracy_analysis", rknn.accuracy_analysis, inputs=list(_require(analysis, "inputs")),
                    output_dir=out_dir)
            timings["accuracy_analysis_s"] = time.perf_counter() - start
            report = os.path.join(out_dir, "error_analysis.txt")
            result["accuracy_analysis"] = {"output_dir": out_dir,
                                           "report": report if os.path.exists(report) else None}
        if params.get("simulate"):
            start = time.perf_counter()
            _vendor("init_runtime", rknn.init_runtime)  # no target = the x86 simulator
            timings["init_runtime_s"] = time.perf_counter() - start
            result["session"] = _new_session(rknn)
            keep = True
        result["timings"] = {k: round(v, 4) for k, v in timings.items()}
        return result
    finally:
        if not keep:
            rknn.release()


def open_board(params):
    from rknn.api import RKNN

    rknn = RKNN(verbose=False)
    try:
        _vendor("load_rknn", rknn.load_rknn, _require(params, "rknn"))
        _vendor("init_runtime", rknn.init_runtime, target=_require(params, "target"),
                device_id=params.get("device_id"))
    except BaseException:
        rknn.release()
        raise
    return {"session": _new_session(rknn)}


def infer(params):
    sid = _require(params, "session")
    rknn = SESSIONS.get(sid)
    if rknn is None:
        raise protocol.BadParams(f"no session {sid}")
    inputs = [protocol.decode_array(a) for a in _require(params, "inputs")]
    start = time.perf_counter()
    outputs = _vendor("inference", rknn.inference, inputs=inputs, data_format=params.get("data_format"))
    seconds = time.perf_counter() - start
    if outputs is None:
        raise protocol.VendorFailure("RKNN inference returned no outputs")
    import numpy as np

    return {"outputs": [protocol.encode_array(np.asarray(o)) for o in outputs], "seconds": seconds}


def release(params):
    rknn = SESSIONS.pop(_require(params, "session"), None)
    if rknn is not None:
        rknn.release()
    return {"released": rknn is not None}


def main():
    return protocol.serve({"hello": hello, "build": build, "open": open_board, "infer": infer, "release": release})


if __name__ == "__main__":
    sys.exit(main())
