"""The activator: holds requests while an LLMDeployment wakes from zero (issue 15).

policy.py   PURE: admit or refuse a request, Retry-After, hold outcome
routing.py  PURE: where a deployment's Service points (its pods or the activator)
checks.py   PURE: admission checks of spec.activator (the CLI, the webhook, the operator)
registry.py the activator's view of the deployments it holds for (via kube.py)
server.py   the HTTP front: hold, wake, forward (aiohttp), metrics
"""
