"""The reference families: trainings with a known phase transition, each with a null control.

``base`` is the contract (:class:`~probekit.eval.families.base.ReferenceRun`: config, presets,
``record``, order parameters, what the benchmark may take from the family) and the recording
helpers every family shares; each other module is one family and its null control, registered in
the ``probekit.transitions`` entry-point group (``deep_linear`` is a complete, short example).
"""
