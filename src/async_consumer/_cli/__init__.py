"""The ``async-consumer`` command: arguments, trial sources, terminal view and the commands."""
