"""Evaluation: score labelled data through the deployed path and report detection quality (`evaluate_bundle`)."""
