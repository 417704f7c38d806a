"""Package discovery: formulations/ and benchmarks/ sit at the repository's top level but install
inside the splitopt package (as splitopt.formulations and splitopt.benchmarks), so that no generic
top-level module name lands in site-packages. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

MOVED = {"splitopt.formulations": "formulations", "splitopt.benchmarks": "benchmarks"}

packages = find_packages(include=["splitopt", "splitopt.*"])
for pkg, folder in MOVED.items():
    packages += [pkg] + [f"{pkg}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=MOVED)
