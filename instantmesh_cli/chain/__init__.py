"""The chain: options, the per-image job, the stages (written once), the models they use, and schedulers.

- ``options``: :class:`PipelineOptions`, checked once;
- ``job``: :class:`Job` (what flows through the stages) and the seed rule;
- ``stages``: the stage functions and the plans (slices of the chain) drivers run;
- ``models``: where weights meet models; :class:`Models` loads each once;
- ``run``: :func:`run_job` (in order) and :class:`BatchRunner` (overlapped groups);
- ``writing``: the export stage's atomic writes.
"""
