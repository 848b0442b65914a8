"""Training: models, data loaders, the training loop, calibration and bundle writing (`train_bundle`).

Needs the `train` extra (torch, scikit-learn, skl2onnx, pandas); nothing here is imported by `run`.
"""

from edgeanom._facade import make_callable

make_callable(__name__, "edgeanom.api:train")  # edgeanom.train(...) calls the API function
