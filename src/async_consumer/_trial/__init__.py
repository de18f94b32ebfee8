"""One trial's inputs and outputs: its plan, command, environment, files, results and classification."""
