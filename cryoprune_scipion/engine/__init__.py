"""The science, on plain files and arrays: nothing below here imports
pyworkflow or pwem, so it is testable in milliseconds and usable from the
`cryoprune` CLI, a RELION External job or a script."""
