"""Model pre-staging: weights downloaded once per node, checked, and loaded offline.

`layout` names the node-local cache (pure), `integrity` hashes and verifies files, `fetchers`
talk to the model hub (or simulate it), `stager` runs a whole staging and the serving pods'
wait-and-verify step, `cli` is `llmops stage fetch|wait`.
"""
