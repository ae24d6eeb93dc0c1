"""Load archc artifacts in a fresh process WITHOUT archc and compare their outputs with expected ones.

Run as ``python -I fresh_load.py MANIFEST.json`` (isolated mode: no PYTHONPATH, no script folder or
working directory on sys.path) from a folder outside the repository. ``archc`` is made unimportable
before anything else runs, so an artifact that needs archc fails here.

The manifest is a list of cases: ``{"id", "kind", "path", "inputs", "expected", "tol", "state"?, "batch2"?}``
(``inputs``/``expected``/``state`` are torch.save files). Prints one JSON object: id → {"err": max relative
error, "ok": bool} or {"error": message}.
"""

import importlib.util
import json
import sys

sys.modules["archc"] = None  # type: ignore[assignment]  # any 'import archc' now raises ImportError

import torch  # noqa: E402


def outputs(y):
    """A model's outputs as a tuple: named outputs (a dict) in order; ONNX runtimes return them as a list."""
    return tuple(y.values()) if isinstance(y, dict) else tuple(y) if isinstance(y, (tuple, list)) else (y,)


def rel_err(ref, got):
    if isinstance(ref, dict) and isinstance(got, dict) and list(ref) != list(got):
        return float("inf")
    refs, gots = outputs(ref), outputs(got)
    if len(refs) != len(gots):
        return float("inf")
    err = 0.0
    for a, b in zip(refs, gots):
        a = torch.as_tensor(a).float()
        b = torch.as_tensor(b).float()
        if a.shape != b.shape:
            return float("inf")
        err = max(err, float((a - b).abs().max()) / max(float(a.abs().max()), 1e-30))
    return err


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load(case, k):
    kind, path = case["kind"], case["path"]
    if kind in ("pytorch", "cudagraph"):
        mod = import_file(path, f"artifact_{k}")
        model = mod.create_model()
        if case.get("state"):
            model.load_state_dict(torch.load(case["state"], weights_only=True))
        model.eval()
        if kind == "cudagraph":
            try:
                mod.create_runner()
            except RuntimeError as exc:  # without CUDA the runner must refuse clearly
                if torch.cuda.is_available() or "CUDA" not in str(exc):
                    raise
            else:
                if not torch.cuda.is_available():
                    raise AssertionError("create_runner() succeeded without CUDA")
        return model
    if kind == "torchscript":
        return torch.jit.load(path)
    if kind == "export":
        return torch.export.load(path).module()
    if kind == "onnx":
        import onnx
        import onnxruntime as ort

        onnx.checker.check_model(onnx.load(path))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        return lambda *xs: sess.run(None, {n: x.numpy() for n, x in zip(names, xs)})
    raise ValueError(kind)


def main():
    cases = json.load(open(sys.argv[1]))
    out = {}
    for k, case in enumerate(cases):
        try:
            fn = load(case, k)
            xs = torch.load(case["inputs"], weights_only=True)
            expected = torch.load(case["expected"], weights_only=True)
            with torch.no_grad():
                got = fn(*xs)
                err = rel_err(expected, got)
                res = {"err": err, "ok": err <= case["tol"]}
                if case.get("batch2"):  # a dynamic batch: batch 2 runs and gives the batch-1 result twice
                    x2 = [torch.cat([x, x]) for x in xs]
                    got2 = fn(*x2)
                    g2, e1 = outputs(got2), outputs(expected)
                    err2 = max(rel_err(torch.cat([torch.as_tensor(e)] * 2), torch.as_tensor(g)) for e, g in zip(e1, g2))
                    res["err_batch2"] = err2
                    res["ok"] = res["ok"] and err2 <= case["tol"]
            out[case["id"]] = res
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with the message
            out[case["id"]] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
