"""The verbs of the ``telepi`` command, one module each; ``telepi.cli`` parses and dispatches."""
