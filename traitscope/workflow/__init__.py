"""The workflow seam: the validated config (settings, config checks), the results layout, resources,
the activation budget and the Snakemake profiles. It imports the core, never an experiment module by name."""
