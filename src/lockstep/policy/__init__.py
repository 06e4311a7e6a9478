"""Policy as code: YAML files -> validated ``model.Policy`` (``load.load_policy``), every
error with its file and line (``errors``). Importing the package loads nothing else, so that
light modules (``durations``) stay light."""
