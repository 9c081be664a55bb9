"""The paper's experiments as commands (one module per experiment) and the `npflows` CLI."""
