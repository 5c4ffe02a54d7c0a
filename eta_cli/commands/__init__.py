"""Thin Typer commands: each parses options, builds settings, calls one library function."""
