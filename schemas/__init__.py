"""Typed, frozen contracts of every stage (config, inputs, outputs) and of the runtime."""
