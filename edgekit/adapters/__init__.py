"""Target adapters: who compiles and runs a model for a device. Imported by name, on first use."""
