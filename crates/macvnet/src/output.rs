//! Text tables and JSON output shared by subcommands.
