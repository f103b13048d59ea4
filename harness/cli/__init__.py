"""The command line: the parser and its one dispatcher (main), one Command class per verb
(commands), shared argument types (args), the progress bar (progress)."""
