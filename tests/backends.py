"""The Database backends the contract suite runs against.

Each name ``X`` here needs a fixture ``backend_X`` (defined in tests/conftest.py or a
plugin it loads) that returns a factory ``make(name: str) -> Database`` giving a fresh,
empty database per call and closing/deleting everything it made at teardown.
"""

CONTRACT_BACKENDS = [
    "local_file",
    "local_memory",
    "remote",
    "couch",
]
