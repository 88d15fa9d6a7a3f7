"""Stages: what happens to a model (export, simplify, inspect, quantize, compile). One module each."""
