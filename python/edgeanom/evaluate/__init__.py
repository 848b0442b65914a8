"""Evaluation: score labelled data through the deployed path and report detection quality (`evaluate_bundle`)."""

from edgeanom._facade import make_callable

make_callable(__name__, "edgeanom.api:evaluate")  # edgeanom.evaluate(...) calls the API function
