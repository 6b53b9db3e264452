"""The ``jaxvision`` command line."""
