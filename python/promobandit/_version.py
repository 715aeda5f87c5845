"""The package version, written once: pyproject.toml reads it (scikit-build-core's regex
provider), CMake gets it as SKBUILD_PROJECT_VERSION, and ``promobandit.__version__`` and
``promobandit --version`` report it."""

__version__ = "0.1.0"
