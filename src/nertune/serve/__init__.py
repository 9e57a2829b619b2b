"""Serve: the Tagger over HTTP."""
