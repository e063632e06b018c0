"""Device side: code that runs inside the images, also on old stacks.

Rules: Python 3.6 syntax and stdlib only (checked by vermin in the tests), plus numpy and the
framework under test, imported lazily where a module serves several frameworks. Nothing here may
import docker, invoke, polars, jinja2, pydantic or rich.
"""
