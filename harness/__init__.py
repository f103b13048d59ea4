"""Measure how much of a tuned Keras model's score is luck: seed matrices, trainings, variance tables."""

__version__ = "0.1.0"
