"""The ``cmpose`` command: one argparse parser, one module per subcommand group."""
