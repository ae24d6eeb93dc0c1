"""Run int8 artifacts WITHOUT archc: ``python -I standalone_eval.py INPUTS.pt OUT.pt ARTIFACT...``.

``archc`` is made unimportable first; each artifact (``.onnx`` run by onnxruntime, ``.py`` through its
``create_int8_model()``) computes its outputs for the saved inputs; they are saved by artifact path.
"""

import importlib.util
import sys

sys.modules["archc"] = None  # type: ignore[assignment]  # any 'import archc' now raises ImportError

import torch  # noqa: E402


def run(path, x):  # noqa: ANN001, ANN201
    if path.endswith(".onnx"):
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    spec = importlib.util.spec_from_file_location("int8_artifact", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        return mod.create_int8_model()(x)


if __name__ == "__main__":
    torch.set_num_threads(1)
    inputs = torch.load(sys.argv[1], weights_only=True)
    torch.save({p: run(p, inputs) for p in sys.argv[3:]}, sys.argv[2])
    print("archc" in sys.modules and sys.modules["archc"] is None)
