"""The ``featherface-deploy`` command line."""
