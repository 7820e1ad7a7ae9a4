"""treatyflow: requests for assistance between competent authorities, under their treaty."""
