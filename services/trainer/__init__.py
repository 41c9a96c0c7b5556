"""The trainer service: the textual-inversion training loop, jobs and savepoints."""
