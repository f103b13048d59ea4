"""Dispatch: the worker that trains units and writes records (worker), the worker process
(process), where workers run (slots), the executors (base, debug, local, executors) and Slurm
job arrays (slurm)."""
