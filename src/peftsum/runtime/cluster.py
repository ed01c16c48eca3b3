"""What Snakemake cannot see wrong in a cluster profile: a partition still the placeholder.

profiles/slurm ships slurm_partition: EDIT-partition for each site to replace; left as it is,
every job would be submitted and refused by sbatch one after the other. The Snakefile asks here
first, so that any run with the profile, a dry run included, stops at once with one line.
"""

from __future__ import annotations

PLACEHOLDER_PARTITION = "EDIT-partition"


def placeholder_partition(resource_settings) -> str | None:
    """A one-line reason when a slurm_partition of Snakemake's resource settings (the profile's
    default-resources, or a rule's set-resources) is still the placeholder; None otherwise."""
    settings = {"default-resources": resource_settings.default_resources or {},
                **{f"set-resources of {rule}": resources
                   for rule, resources in resource_settings.overwrite_resources.items()}}
    for where, resources in settings.items():
        value = resources.get("slurm_partition")
        if getattr(value, "raw", value) == PLACEHOLDER_PARTITION:
            return (f"the SLURM profile's slurm_partition ({where}) is still the placeholder "
                    f"{PLACEHOLDER_PARTITION}: write your site's partition there (sinfo -s lists "
                    "them) or pass --default-resources slurm_partition=NAME")
    return None
