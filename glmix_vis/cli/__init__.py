"""Command-line entry points. Each subcommand lives in its own module exposing
``add_parser(subparsers)`` (argument parsing only) and ``run(args) -> int`` (calls the library)."""
