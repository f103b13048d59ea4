"""Training: datasets (data), model builders (models), per-backend determinism switches
(determinism), engines (engines/), metrics and the `Trainer` that ties them together. The only
package that imports Keras and its backend."""
