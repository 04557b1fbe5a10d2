"""pytest_test: one py_test per pytest file, run by tools/pytest_runner.py."""

def pytest_test(name, src, deps = [], data = [], tags = [], size = "small", **kwargs):
    native.py_test(
        name = name,
        srcs = ["//tools:pytest_runner.py", src],
        main = "//tools:pytest_runner.py",
        args = ["$(location %s)" % src],
        deps = deps,
        data = data,
        tags = tags,
        size = size,
        python_version = "PY3",
        **kwargs
    )
