"""Registration and rights confirmation: data resources, the three rights, objections, certificates."""
