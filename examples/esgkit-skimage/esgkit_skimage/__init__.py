"""esgkit-skimage: an example third-party esgkit plugin wrapping scikit-image segmenters."""
