"""Serving and tagging: load test, tagging speed, predict memory, command start-up."""
