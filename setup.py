"""Package layout only (the metadata is in pyproject.toml).

``resources/`` stays at the top of the repository (the product's layout) and is installed as
the data package ``tdri_resources``: a wheel then carries the templates, the style sheet, the
icons, the tag sets and the help pages, and ``tdri_engine.paths`` finds them through
``importlib.resources`` (pyproject's table form cannot map a folder to another package name
while also finding packages, hence this file).
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["tdri_engine", "tdri_engine.*", "studio", "studio.*"]),
        "tdri_resources",
    ],
    package_dir={"tdri_resources": "resources"},
    package_data={"tdri_engine": ["py.typed"], "tdri_resources": ["**/*"]},
    include_package_data=False,
)
