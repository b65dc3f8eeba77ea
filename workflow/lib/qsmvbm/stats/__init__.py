"""Group statistics: voxelwise GLM, random field theory, permutation, clusters, ROI tables."""
