# Makes dgm's test fixtures (dgm_host, dgm_plugin) available to these tests.
pytest_plugins = ["dgm.testing"]
