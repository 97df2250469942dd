"""One module per `vpa-fleet` subcommand; each exposes `register(subparsers)`.

A subcommand module adds its parser and sets `func` to a callable taking the parsed
arguments and returning the process exit code.
"""
