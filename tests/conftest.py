pytest_plugins = ["llmops.sandbox.pytest_plugin"]
